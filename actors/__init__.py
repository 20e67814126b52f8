"""edge-actors: an asyncio actor runtime for ML inference on edge devices."""

__version__ = "0.1.0"
