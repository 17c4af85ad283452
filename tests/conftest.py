"""Test-wide settings: offline model hubs, and shared fixtures for the real model and index."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers: no hub, ever.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
