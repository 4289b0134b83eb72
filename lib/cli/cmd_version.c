#include <dnnl.h>
#include <stdio.h>

#include "cli/commands.h"
#include "facekd.h"

int fkd_cmd_version(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        printf("usage: facekd version\n\nPrints facekd's version and the oneDNN library it runs on.\n");
        return 0;
    }
    const dnnl_version_t *v = dnnl_version();
    printf("facekd %s\noneDNN %d.%d.%d (%s), CPU runtime %s\n", FKD_VERSION, v->major, v->minor,
           v->patch, v->hash, v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other");
    return 0;
}
