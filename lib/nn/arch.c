#include "nn/arch.h"

#include <stdio.h>
#include <string.h>

#include "students/mbf.h"
#include "teachers/iresnet.h"

static int opt_or(int value, int fallback)
{
    return value > 0 ? value : fallback;
}

static void stage_blocks(const fkd_arch *arch, const fkd_arch_opts *o, int blocks[4])
{
    for (int s = 0; s < 4; s++) blocks[s] = o->blocks ? o->blocks[s] : arch->blocks[s];
}

static fkd_status build_iresnet(fkd_graph *g, const fkd_arch *arch, const fkd_arch_opts *o, fkd_value input,
                                fkd_value *embedding)
{
    fkd_iresnet_config c = {.width = opt_or(o->width, 64), .num_features = opt_or(o->num_features, 512),
                            .dropout = o->dropout};
    stage_blocks(arch, o, c.layers);
    return fkd_iresnet_build(g, &c, input, embedding);
}

static fkd_status build_mbf(fkd_graph *g, const fkd_arch *arch, const fkd_arch_opts *o, fkd_value input,
                            fkd_value *embedding)
{
    if (o->dropout != 0)
        return FKD_FAIL(FKD_ERR_ARG, "%s: MobileFaceNet has no dropout (got %g)", arch->name, o->dropout);
    fkd_mbf_config c = {.scale = arch->scale, .width = opt_or(o->width, 64),
                        .num_features = opt_or(o->num_features, 512)};
    stage_blocks(arch, o, c.blocks);
    return fkd_mbf_build(g, &c, input, embedding);
}

static const fkd_arch arch_table[] = {
    {"iresnet18", "r18 resnet18", "iresnet", "IResNet-18 (arcface_torch r18); the ResNet-18 student", {2, 2, 2, 2},
     0, "fc.weight", build_iresnet},
    {"iresnet34", "r34", "iresnet", "IResNet-34 (arcface_torch r34)", {3, 4, 6, 3}, 0, "fc.weight", build_iresnet},
    {"iresnet50", "r50", "iresnet", "IResNet-50 (arcface_torch r50), the ArcFace teacher", {3, 4, 14, 3}, 0,
     "fc.weight", build_iresnet},
    {"iresnet100", "r100", "iresnet", "IResNet-100 (arcface_torch r100)", {3, 13, 30, 3}, 0, "fc.weight", build_iresnet},
    {"mbf", "mobilefacenet", "mobilefacenet", "MobileFaceNet (arcface_torch mbf), the student", {1, 4, 6, 2}, 2,
     "features.layers.2.weight", build_mbf},
    {"mbf_large", "", "mobilefacenet", "MobileFaceNet large (arcface_torch mbf_large)", {2, 8, 12, 4}, 4,
     "features.layers.2.weight", build_mbf},
};

int fkd_arch_count(void)
{
    return (int)(sizeof arch_table / sizeof arch_table[0]);
}

const fkd_arch *fkd_arch_at(int index)
{
    return index >= 0 && index < fkd_arch_count() ? &arch_table[index] : NULL;
}

/* True when `name` is one of the space-separated words of `list`. */
static int in_word_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, " ");
        if (len == n && n > 0 && strncmp(p, name, n) == 0) return 1;
        p += len;
        p += strspn(p, " ");
    }
    return 0;
}

const fkd_arch *fkd_arch_find(const char *name)
{
    for (int i = 0; i < fkd_arch_count(); i++)
        if (strcmp(arch_table[i].name, name) == 0 || in_word_list(arch_table[i].aliases, name))
            return &arch_table[i];
    char known[256] = "";
    for (int i = 0; i < fkd_arch_count(); i++) {
        size_t len = strlen(known);
        snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", arch_table[i].name);
    }
    FKD_FAIL(FKD_ERR_NOTFOUND, "unknown architecture '%s' (known: %s)", name, known);
    return NULL;
}

fkd_status fkd_arch_build(fkd_graph *g, const char *name, const fkd_arch_opts *opts, fkd_value input,
                          fkd_value *embedding)
{
    const fkd_arch *arch = fkd_arch_find(name);
    if (!arch) return FKD_ERR_NOTFOUND;
    const fkd_arch_opts defaults = {0};
    fkd_status s = arch->build(g, arch, opts ? opts : &defaults, input, embedding);
    return s == FKD_OK ? s : FKD_WRAP(s, "building %s: ", arch->name);
}
