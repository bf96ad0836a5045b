/* The callers file: any bytes as YAML or JSON, then a match against it. */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "auth/callers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    struct callers *c = NULL;
    snprintf(path, sizeof(path), "/tmp/cg-fuzz-callers-%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    if (callers_load(path, &c, err, sizeof(err)) == 0) {
        const char *sans[] = {"billing.internal"};
        struct caller_identity id = {.subject = "CN=x", .sans = sans, .nsans = 1,
                                     .bearer = "token"};
        const struct caller *who = callers_match(c, &id);
        if (who)
            caller_may(who, "SendSMS");
        callers_free(&c);
    }
    unlink(path);
    return 0;
}
