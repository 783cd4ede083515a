"""patentcpc: assign Cooperative Patent Classification (CPC) codes to patent text."""

__version__ = "0.1.0"
