"""The Functions app: registers the blueprints in functions/ (Python v2 programming model)."""

import azure.functions as func

from functions.http_api import bp as http_api
from functions.queue import bp as queue
from functions.timer import bp as timer

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(timer)
app.register_functions(http_api)
app.register_functions(queue)
