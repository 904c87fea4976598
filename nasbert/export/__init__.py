"""Stage 4, `nasbert export`: extract students (supernet or teacher weights), refine them by distillation,
write Hugging Face folders (+ ONNX, model card)."""
