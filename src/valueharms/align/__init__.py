"""Alignment: VIM data, benign data, and the one LoRA trainer."""
