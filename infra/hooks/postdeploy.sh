#!/bin/sh
# azd postdeploy hook: run the deployed app's preflight (GET /api/preflight), which checks with the
# app's own managed identity every permission and connection a backup and a restore need, and print
# what is not ok with its fix. Exits 1 when a check failed; azure.yaml lets azd carry on (the
# deployment itself succeeded) and shows the failure. Run it again any time: `azd hooks run postdeploy`.
set -eu

app="${AZURE_FUNCTION_APP_NAME:?set by azd from the deployment outputs; run this through azd}"
group="${AZURE_RESOURCE_GROUP:?set by azd from the deployment outputs; run this through azd}"
base="${PREFLIGHT_BASE_URL:-}"
if [ -z "$base" ]; then
  base="https://$(az functionapp show -g "$group" -n "$app" --query defaultHostName -o tsv)/api"
fi
key="$(az functionapp keys list -g "$group" -n "$app" --query functionKeys.default -o tsv)"
token=""
if [ -n "${AUTH_CLIENT_ID:-}" ]; then  # Entra ID on: the caller needs a token with the Backup.Read app role
  token="$(az account get-access-token --resource "api://$AUTH_CLIENT_ID" --query accessToken -o tsv)" || {
    echo "No token for api://$AUTH_CLIENT_ID: the app registration must expose a scope and pre-authorize the Azure CLI (04b07795-8ddb-461a-bbee-02f9e1bf7b46) for it (docs/deploy.md, \"Entra ID app roles\"), or run mccf-backup preflight yourself." >&2
    exit 1
  }
fi

echo "mccf-backup preflight of $app (with its managed identity) ..."
# The key and the token reach curl on stdin, as its config (-K -): never in the URL, which proxies may
# log, nor in curl's arguments, which `ps` shows. printf is a shell builtin: no process shows them.
# A cold app may take a while to answer its first request after a deployment; curl retries what it
# deems transient (a refused connection, 503, 504), never a preflight that answered.
answer="$( { printf 'header = "x-functions-key: %s"\n' "$key"
  [ -n "$token" ] && printf 'header = "Authorization: Bearer %s"\n' "$token"
  true; } | curl -sS -K - --max-time 180 --retry "${PREFLIGHT_RETRIES:-4}" --retry-delay 15 --retry-connrefused \
  -w '\n%{http_code}' "$base/preflight")" || {
  echo "The app did not answer $base/preflight. Check it is running (az functionapp show -g $group -n $app)." >&2
  exit 1
}
status="$(printf '%s' "$answer" | tail -n 1)"
report="$(printf '%s' "$answer" | sed '$d')"
if [ "$status" != 200 ]; then
  echo "The app answered HTTP $status to $base/preflight:" >&2
  printf '%s\n' "$report" | head -c 2000 >&2
  echo >&2
  echo "401/403: with Entra ID on (AUTH_CLIENT_ID), you need the Backup.Read app role; a new role assignment can take 5-10 minutes." >&2
  exit 1
fi
printf '%s' "$report" | python3 -c '
import json, sys
try:
    report = json.load(sys.stdin)
    checks = report["checks"]
except (ValueError, KeyError, TypeError):
    sys.exit("The app answered 200, but not with a preflight report.")
marks = {"ok": "  ok  ", "warning": " WARN ", "failed": " FAIL "}
for check in checks:
    where = " [" + check["target"].rsplit("/", 1)[-1] + "]" if check.get("target") else ""
    print("[" + marks.get(check["status"], check["status"]) + "] " + check["name"] + where + ": " + check["found"])
    if check["status"] != "ok" and check.get("fix"):
        print("         fix: " + check["fix"])
counts = report.get("counts", {})
warnings = "%s warning%s" % (counts.get("warning"), "" if counts.get("warning") == 1 else "s")
print("\n%s: %s ok, %s, %s failed" % (report["status"].upper(), counts.get("ok"), warnings, counts.get("failed")))
if report["status"] == "failed":
    print("Fix what failed, then run the checks again: azd hooks run postdeploy (a new role assignment can take 5-10 minutes to apply).")
sys.exit(1 if report["status"] == "failed" else 0)
'
