"""Task distillation, `nasbert distill`: a student learns a task from fine-tuned teachers, recipe by recipe.

    config.py      DistillConfig (the fine-tune's options + the recipes'), LayerMapSearchConfig
    registry.py    Stage, Recipe, RECIPES: a recipe is a list of stages (data, teacher, losses, epochs, units)
    kd.py pkd.py tinybert.py skd.py ernie_tiny.py xtremedistil.py   one recipe each
    layer_map.py   --layer-map: named maps, pairs `s0:t2,s1:t5`, checks
    views.py       what a student's / a teacher's "layers" are (NAS-BERT blocks, BERT layers), attention scores
    job.py         loading and checking every input once (task, data, student, teachers, layer map)
    trainer.py     the Hugging Face Trainer whose loss is the stage's TASK_LOSSES (nasbert.common.losses)
    run.py         `distill()`: the stage loop (resumable by stage), one stage on the Trainer, SKD's team scores
    progress.py    the state after each stage (resume) and the finished output folder
    search.py      the genetic layer-map search with a proxy distillation (`nasbert layer-map-search`)
"""
