"""Training: datasets to training records in each family's frame (convert), and LoRA fine-tuning
(finetune)."""
