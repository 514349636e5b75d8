"""The Functions app: registers the blueprints in functions/ (Python v2 programming model).

host.json keeps traces out of Application Insights' sampling, so that no event an alert or the workbook
counts is ever dropped; the Azure SDKs' per-request INFO lines (every HTTP call's headers) are kept out
of the traces instead, so the volume stays that of the app's own lines.
"""

import logging

import azure.functions as func

from functions.http_api import bp as http_api
from functions.queue import bp as queue
from functions.timer import bp as timer

for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "azure.mgmt.core"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(timer)
app.register_functions(http_api)
app.register_functions(queue)
