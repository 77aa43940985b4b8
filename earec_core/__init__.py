"""EARec: explainable multi-modality alignment for transferable recommendation.

Stage 1 aligns each modality alone by teaching a LoRA-tuned LLM to generate the item's anchor
(title) from that modality; stage 2 composes the adapters, embeds items from all their
modalities, and trains a sequential recommender on the frozen embeddings.
"""

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
