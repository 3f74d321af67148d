# fcn-pipeline: raw downloads → the paper's tables (Long, Shelhamer, Darrell 2015).
#   snakemake results/tables.md --cores 2 --configfile config/demo.yaml      # offline CPU demo
#   snakemake --cores 8 results/tables.md                                    # the paper on a GPU box (GPU cap: common.smk)
# Config: config/config.yaml; a complete --configfile (with experiments) replaces it, a partial one or
# --config pairs merge over it (see config/README.md).
# Rules are thin: each calls one fcnlib function through workflow/scripts/.
from snakemake.utils import min_version

min_version("9.0")


# the report opens on this description (the tables first), then its categories: Tables, Figures
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/hha.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/released.smk"
include: "workflow/rules/versioning.smk"


rule all:
    default_target: True
    input:
        layout.TABLES_MD,
        layout.TABLES_JSON,
        figure_targets(),
        [layout.RELEASED_MD, layout.RELEASED_JSON] if RELEASED else [],
        summary_targets(),


# last: every rule is defined
add_code_hashes(workflow.rules)
