/* Model files by format (see model_any.h). */
#include "io/model_any.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "io/model.h"
#include "nn/arch.h"

fkd_model_format fkd_model_format_of(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n >= 5 && strcasecmp(path + n - 5, ".onnx") == 0 ? FKD_MODEL_ONNX : FKD_MODEL_SAFETENSORS;
}

static fkd_status open_onnx(const char *path, const char *arch, const fkd_graph_config *config, fkd_graph **graph,
                            fkd_value *embedding, fkd_model_any_info *info)
{
    FKD_TRY(fkd_onnx_import(graph, path, config, embedding, &info->onnx));
    const char *file_arch = info->onnx.architecture;
    if (arch && file_arch[0]) {
        const fkd_arch *a = fkd_arch_find(arch), *f = fkd_arch_find(file_arch);
        if (!a || a != f) {
            fkd_graph_free(*graph);
            *graph = NULL;
            return FKD_FAIL(FKD_ERR_ARG, "%s: the file's architecture is '%s', not '%s'", path, file_arch, arch);
        }
    }
    snprintf(info->architecture, sizeof info->architecture, "%s", file_arch);
    info->embedding_size = info->onnx.embedding_size;
    return FKD_OK;
}

static fkd_status open_safetensors(const char *path, const char *arch, const fkd_graph_config *config,
                                   fkd_graph **graph, fkd_value *embedding, fkd_model_any_info *info)
{
    fkd_safetensors st;
    FKD_TRY(fkd_safetensors_read(&st, path));
    const char *resolved = NULL;
    fkd_status s = fkd_model_resolve_arch(&st, arch, &resolved);
    if (s == FKD_OK) s = fkd_model_open(graph, &st, resolved, config, embedding);
    fkd_safetensors_free(&st);
    if (s != FKD_OK) return s;
    int nd, dims[4];
    s = fkd_graph_shape(*graph, *embedding, &nd, dims);
    if (s != FKD_OK) {
        fkd_graph_free(*graph);
        *graph = NULL;
        return s;
    }
    snprintf(info->architecture, sizeof info->architecture, "%s", resolved);
    info->embedding_size = dims[1];
    return FKD_OK;
}

fkd_status fkd_model_open_any_info(const char *path, const char *arch, const fkd_graph_config *config,
                                   fkd_graph **graph, fkd_value *embedding, fkd_model_any_info *info)
{
    fkd_model_any_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    *graph = NULL;
    if (!path) return FKD_FAIL(FKD_ERR_ARG, "model: NULL path");
    info->format = fkd_model_format_of(path);
    if (info->format == FKD_MODEL_ONNX) return open_onnx(path, arch, config, graph, embedding, info);
    return open_safetensors(path, arch, config, graph, embedding, info);
}

fkd_status fkd_model_open_any(const char *path, const char *arch, const fkd_graph_config *config, fkd_graph **graph,
                              fkd_value *embedding)
{
    return fkd_model_open_any_info(path, arch, config, graph, embedding, NULL);
}
