"""nasbert: compress a BERT-style teacher into small, fast, task-agnostic students (NAS-BERT + ETD).

Importing the package registers the student with the transformers Auto classes (library mode), so
`AutoModel.from_pretrained(student_dir)` works without `trust_remote_code` where nasbert is installed.
"""

from nasbert.configuration_nasbert import NasbertConfig
from nasbert.modeling_nasbert import (
    AUTO_CLASSES,
    NasbertForMaskedLM,
    NasbertForQuestionAnswering,
    NasbertForSequenceClassification,
    NasbertForTokenClassification,
    NasbertModel,
)
from nasbert.registration import register_auto_classes

__version__ = "0.1.0"

register_auto_classes()

__all__ = ["AUTO_CLASSES", "NasbertConfig", "NasbertForMaskedLM", "NasbertForQuestionAnswering",
           "NasbertForSequenceClassification", "NasbertForTokenClassification", "NasbertModel", "__version__"]
