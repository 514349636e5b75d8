"""Local Azure emulator for mccf-backup: managed identity, ARM (Managed CCF), Key Vault, Azure Files.

Not deployed with the Functions app (.funcignore); see emulator/README.md.
"""

from .runtime import Emulator

__all__ = ["Emulator"]
