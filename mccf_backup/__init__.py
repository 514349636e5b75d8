"""mccf-backup engine: scheduled and on-demand backup and restore of Azure Managed CCF ledgers.

Used by the Functions app (functions/) and the operator CLI (mccf-backup). It never
imports azure.functions, so it runs and is tested outside a Functions host.
"""

__version__ = "0.1.0"
