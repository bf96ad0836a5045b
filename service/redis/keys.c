/* Formatting the keys of keys.h. */
#include "redis/keys.h"

#include <stdio.h>

static const char *const suffixes[KEYS_RECORD_COUNT] = {
#define KEYS_SUFFIX(v, suffix, owner, what) [v] = suffix,
    KEYS_MAP(KEYS_SUFFIX)
#undef KEYS_SUFFIX
};

int keys_make(char *out, size_t cap, enum keys_record record, const char *tag, const char *rest)
{
    int n;

    if ((int)record < 0 || record >= KEYS_RECORD_COUNT || !tag)
        n = -1;
    else
        n = snprintf(out, cap, "cg:{%s}:%s%s", tag, suffixes[record], rest ? rest : "");
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return -1;
    }
    return 0;
}
