/* The Lua scripts of service/redis/scripts/, embedded at build time. */
#ifndef COMMSGATE_REDIS_SCRIPTS_H
#define COMMSGATE_REDIS_SCRIPTS_H

#include <stddef.h>

struct script_source {
    const char *name; /* file name without .lua */
    const char *text;
    size_t len;
    const char *sha1; /* hex, as EVALSHA wants it */
};

extern const struct script_source script_sources[];
extern const unsigned script_source_count;

#endif
