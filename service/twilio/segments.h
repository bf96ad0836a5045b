/* How many SMS segments a body takes, and in which encoding: the count
 * Twilio bills and throttles by. */
#ifndef COMMSGATE_SEGMENTS_H
#define COMMSGATE_SEGMENTS_H

#include <stddef.h>

enum segments_encoding { SEGMENTS_GSM7, SEGMENTS_UCS2 };

struct segments_info {
    enum segments_encoding encoding;
    unsigned segments;
    unsigned units; /* septets (GSM-7) or UTF-16 code units (UCS-2) */
    unsigned chars; /* code points */
};

/* CG_EINVAL for invalid UTF-8. An empty body is 0 segments. */
int segments_count(const char *utf8, size_t len, struct segments_info *out);

#endif
