/* fuzz/fuzz_config: libFuzzer harness for config/ — any bytes as a configuration file must give a snapshot
 * or an error message, never a crash, a leak or a hang. */
#include <stdint.h>
#include <stdio.h>

#include "config/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg *cfg = NULL;
    struct cfg_error err;
    char msg[800];

    if (cfg_parse((const char *)data, size, "fuzz.json", &cfg, &err) == CFG_OK) {
        cfg_free(cfg);
    } else {
        cfg_error_format(&err, msg, sizeof(msg));
    }
    return 0;
}
