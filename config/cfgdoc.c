/* cfgdoc: prints the README's configuration reference table from the field rows in config/cfg.c, so the
 * documentation cannot drift from what the parser accepts (ctest unit_config_doc compares the two). */
#include "config/cfg.h"

#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    if (cfg_reference_write(stdout) != 0 || fflush(stdout) != 0) {
        perror("cfgdoc: writing the table");
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
