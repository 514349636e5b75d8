# azd postdeploy hook (Windows): the same as postdeploy.sh. Runs the deployed app's preflight with its
# managed identity and prints what is not ok with its fix; exits 1 when a check failed.
$ErrorActionPreference = 'Stop'
$app = $env:AZURE_FUNCTION_APP_NAME; $group = $env:AZURE_RESOURCE_GROUP
if (-not $app -or -not $group) { throw 'Run this through azd: it sets AZURE_FUNCTION_APP_NAME and AZURE_RESOURCE_GROUP.' }
$base = $env:PREFLIGHT_BASE_URL
if (-not $base) { $base = 'https://' + (az functionapp show -g $group -n $app --query defaultHostName -o tsv) + '/api' }
$headers = @{ 'x-functions-key' = (az functionapp keys list -g $group -n $app --query functionKeys.default -o tsv) }
if ($env:AUTH_CLIENT_ID) {  # Entra ID on: the caller needs a token with the Backup.Read app role
  $token = az account get-access-token --resource "api://$($env:AUTH_CLIENT_ID)" --query accessToken -o tsv
  if ($LASTEXITCODE -ne 0 -or -not $token) {
    Write-Error ("No token for api://$($env:AUTH_CLIENT_ID): the app registration must expose a scope and pre-authorize " +
      "the Azure CLI (04b07795-8ddb-461a-bbee-02f9e1bf7b46) for it (docs/deploy.md, 'Entra ID app roles'), or run mccf-backup preflight yourself.")
    exit 1
  }
  $headers['Authorization'] = 'Bearer ' + $token
}
Write-Host "mccf-backup preflight of $app (with its managed identity) ..."
$report = Invoke-RestMethod -Uri "$base/preflight" -Headers $headers -TimeoutSec 180 -MaximumRetryCount 4 -RetryIntervalSec 15
$marks = @{ ok = '  ok  '; warning = ' WARN '; failed = ' FAIL ' }
foreach ($check in $report.checks) {
  $where = if ($check.target) { ' [' + ($check.target -split '/')[-1] + ']' } else { '' }
  Write-Host ('[' + $marks[$check.status] + '] ' + $check.name + $where + ': ' + $check.found)
  if ($check.status -ne 'ok' -and $check.fix) { Write-Host ('         fix: ' + $check.fix) }
}
Write-Host ("`n{0}: {1} ok, {2} warnings, {3} failed" -f $report.status.ToUpper(), $report.counts.ok, $report.counts.warning, $report.counts.failed)
if ($report.status -eq 'failed') { exit 1 }
