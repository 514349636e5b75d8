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
auth=""
if [ -n "${AUTH_CLIENT_ID:-}" ]; then  # Easy Auth on: the caller needs a token (and the Backup.Read role)
  auth="Authorization: Bearer $(az account get-access-token --resource "api://$AUTH_CLIENT_ID" --query accessToken -o tsv)"
fi

echo "mccf-backup preflight of $app (with its managed identity) ..."
# The key travels in a header, never in the URL, which shells and proxies may log. A cold app may
# take a while to answer its first request after a deployment: retry a few times.
report="$(curl -sS --max-time 180 --retry "${PREFLIGHT_RETRIES:-4}" --retry-delay 15 --retry-all-errors \
  -H "x-functions-key: $key" ${auth:+-H "$auth"} "$base/preflight")" || {
  echo "The app did not answer $base/preflight. Check it is running (az functionapp show -g $group -n $app)." >&2
  exit 1
}
printf '%s' "$report" | python3 -c '
import json, sys
try:
    report = json.load(sys.stdin)
    checks = report["checks"]
except (ValueError, KeyError, TypeError):
    sys.exit("The app answered something else than a preflight report (Easy Auth on? You need the Backup.Read role).")
marks = {"ok": "  ok  ", "warning": " WARN ", "failed": " FAIL "}
for check in checks:
    where = " [" + check["target"].rsplit("/", 1)[-1] + "]" if check.get("target") else ""
    print("[" + marks.get(check["status"], check["status"]) + "] " + check["name"] + where + ": " + check["found"])
    if check["status"] != "ok" and check.get("fix"):
        print("         fix: " + check["fix"])
counts = report.get("counts", {})
warnings = "%s warning%s" % (counts.get("warning"), "" if counts.get("warning") == 1 else "s")
print("\n%s: %s ok, %s, %s failed" % (report["status"].upper(), counts.get("ok"), warnings, counts.get("failed")))
sys.exit(1 if report["status"] == "failed" else 0)
'
