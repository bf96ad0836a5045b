/* The environment commsgate is configured by: the input is NAME=value
 * lines, read through config_load's getenv hook. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

#define MAX_VARS 64

static struct {
    char *name[MAX_VARS], *value[MAX_VARS];
    int n;
} env;

static const char *lookup(const char *name)
{
    for (int i = 0; i < env.n; i++)
        if (strcmp(env.name[i], name) == 0)
            return env.value[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), err[512];
    static struct config cfg;
    memcpy(text, data, size);
    text[size] = '\0';
    env.n = 0;
    for (char *line = strtok(text, "\n"); line && env.n < MAX_VARS; line = strtok(NULL, "\n")) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        env.name[env.n] = line;
        env.value[env.n++] = eq + 1;
    }
    config_load(&cfg, lookup, err, sizeof(err));
    free(text);
    return 0;
}
