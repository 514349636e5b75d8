// mccf-backup: the Functions app (Flex Consumption, user-assigned identity), its storage (identity-based),
// the backup storage account, the Key Vault holding its connection string, and monitoring.
// Also: the custom Managed CCF role on the targets' resource groups, alert rules, optional Entra ID
// for the HTTP API's app roles, and the optional Logic Apps. docs/deploy.md says how to use it.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags derive from it')
param environmentName string

@description('Region for every resource: one where Flex Consumption runs (the list of Microsoft\'s Flex Consumption azd samples); azd offers only these')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({ azd: { type: 'location' } })
param location string = resourceGroup().location

@description('Object id of the deployer, given Key Vault Secrets Officer to manage the secret')
param principalId string = ''

@description('What the deployer is: a person (User), or CI signed in as a service principal or with OIDC (ServicePrincipal): set AZURE_PRINCIPAL_TYPE in CI')
@allowed(['User', 'ServicePrincipal'])
param principalType string = 'User'

@description('ARM resource IDs of the Managed CCF instances to protect, comma separated (set after deployment if empty)')
param mccfTargets string = ''

@description('NCRONTAB schedules of the timers')
param backupSchedule string = '0 0 2 * * *'
param pruneSchedule string = '0 30 3 * * *'
param healthSchedule string = '0 15 * * * *'
param verifySchedule string = '0 */10 * * * *'
@description('NCRONTAB of the sweeper: moves on jobs whose next step was lost, ends jobs past their deadline')
param sweepSchedule string = '0 */5 * * * *'

@description('Days a deleted backup share stays recoverable (share soft delete); longer than the pruning window')
@minValue(7)
@maxValue(365)
param shareSoftDeleteDays int = 30

@description('Redundancy of the backup storage account: geo-redundant by default, so backups survive a region')
@allowed(['Standard_GRS', 'Standard_GZRS', 'Standard_RAGRS', 'Standard_RAGZRS'])
param backupStorageSku string = 'Standard_GRS'

@description('Put a CannotDelete lock on the backup storage account')
param lockBackupStorage bool = true

@description('Where alerts go (an e-mail address); empty: alerts show in the portal only')
param alertEmail string = ''

@description('inline: the timer backs up every target itself; queue: one queue message per target (many targets)')
@allowed(['inline', 'queue'])
param backupFanout string = 'inline'

@description('Allow replace-restore (delete then restore); also grants the delete action on the targets')
param allowReplaceRestore bool = false

@description('Client ID of the API\'s Entra ID app registration: its app roles guard the HTTP API, checked by the app; empty: function keys alone')
param authClientId string = ''

@description('Deploy the Logic Apps samples (after the code is deployed once: they read a function key)')
param deployLogicApps bool = false

@description('Who approves a restore in the restore-with-approval Logic App (e-mail)')
param restoreApprover string = ''

@description('The https URL callers reach the API at when a Front Door or API Management sits in front; empty: the app\'s own host name')
param publicBaseUrl string = ''

@description('Key Vault name; empty: kv-mccfbk-<token>. After `azd down` the old vault stays soft-deleted (purge protection) for 90 days under that name: name a new one, or recover it first (az keyvault recover)')
@maxLength(24)
param keyVaultName string = ''

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName }
var storageSecretName = 'backup-storage-connection'
var operationsQueueName = 'mccfbackup-operations'
var targetsQueueName = 'mccfbackup-targets'
var deploymentContainer = 'app-package-${token}'
// The targets, comma or newline separated as the app reads them; an empty entry (a trailing comma) is skipped.
var targetIds = filter(map(split(replace(mccfTargets, '\n', ','), ','), id => trim(id)), id => !empty(id))
// The targets' resource groups, each once (union of arrays drops duplicates).
var targetResourceGroupIds = union(map(targetIds, id => '/subscriptions/${split(id, '/')[2]}/resourceGroups/${split(id, '/')[4]}'), [])
// One role per target subscription, assignable anywhere in it: a target's resource group dropped later
// leaves its role's scopes as they were (ARM refuses to remove an assignable scope that still holds an
// assignment: RoleScopeBeingRemovedContainsAssignments), and a subscription dropped altogether leaves
// its role alone, since the deployment no longer touches it.
var targetSubscriptionIds = union(map(targetIds, id => split(id, '/')[2]), [])

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-mccfbackup-${token}'
  location: location
  tags: tags
}

// --- monitoring ---
resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-mccfbackup-${token}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-mccfbackup-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

// --- storage of the Functions app itself (identity-based, no keys) ---
resource functionsStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is 'stfn' + uniqueString(), 17 lowercase letters and digits; checkov cannot evaluate the interpolation
  // checkov:skip=CKV_AZURE_206: holds the app package, timer leases, queues and job history, all rebuildable; zone-redundant is enough. The backups themselves are on geo-redundant storage
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches it over public endpoints; shared keys are disabled, so only the app's identity gets in. Add VNet integration and a deny rule if your policy needs it
  name: 'stfn${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_ZRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
  }
  resource blobs 'blobServices' = {
    name: 'default'
    resource container 'containers' = {
      name: deploymentContainer
    }
  }
  // The operations queue carries every running job's next step; the targets queue the scale-out mode's
  // messages. Created here so the app's identity needs no right to create queues at run time.
  resource queues 'queueServices' = {
    name: 'default'
    resource operationsQueue 'queues' = {
      name: operationsQueueName
    }
    resource targetsQueue 'queues' = {
      name: targetsQueueName
    }
  }
}

// --- the backup storage account (Azure Files shares written by Managed CCF) ---
resource backupStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is 'stbk' + uniqueString(), 17 lowercase letters and digits; checkov cannot evaluate the interpolation
  // checkov:skip=CKV_AZURE_35: the Managed CCF service writes backups into the share from Microsoft's network with a SAS; a default-deny rule would block it (no service tag or trusted-service exception covers it)
  name: 'stbk${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: backupStorageSku }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
  }
  resource files 'fileServices' = {
    name: 'default'
    properties: {
      shareDeleteRetentionPolicy: {
        enabled: true
        days: shareSoftDeleteDays
      }
    }
  }
}

resource backupStorageLock 'Microsoft.Authorization/locks@2020-05-01' = if (lockBackupStorage) {
  name: 'do-not-delete-backups'
  scope: backupStorage
  properties: {
    level: 'CanNotDelete'
    notes: 'Holds Managed CCF backups; remove this lock deliberately.'
  }
}

// --- Key Vault with the backup storage connection string (written here, never in a parameter file) ---
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Flex Consumption without VNet integration calls the vault from public addresses; access is by RBAC only (the app's identity: Key Vault Secrets User). Add VNet integration and a firewall if your policy needs it
  // checkov:skip=CKV_AZURE_189: as CKV_AZURE_109, public network access is how the app reaches the vault without VNet integration
  name: empty(keyVaultName) ? 'kv-mccfbk-${take(token, 12)}' : keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource storageSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the value is the storage account's connection string, rewritten from listKeys at every provision; an expiry date would stop every backup on that day. Rotate the account key instead (docs/deploy.md, "After azd up")
  parent: vault
  name: storageSecretName
  properties: {
    contentType: 'storage-connection-string'
    value: 'DefaultEndpointsProtocol=https;AccountName=${backupStorage.name};AccountKey=${backupStorage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  }
}

// --- role assignments: least privilege for the app's identity ---
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(vault.id, principalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: principalId
    principalType: principalType
  }
}

resource functionsStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]: {
  name: guid(functionsStorage.id, identity.id, role)
  scope: functionsStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}]

// Reader on the backup account: the preflight reads its share soft delete setting (no keys, no data).
resource backupStorageReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(backupStorage.id, identity.id, roles.reader)
  scope: backupStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.reader)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// --- the Functions app on Flex Consumption ---
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: a timer-driven backup tolerates a zone outage: the next run (or the past-due run) catches up, and health alerts fire on an RPO breach
  name: 'plan-mccfbackup-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the HTTP API is called by Logic Apps and operators' tools; every route needs a function key, and authClientId adds Entra ID app roles, checked by the app
  // checkov:skip=CKV_AZURE_17: callers authenticate with function keys and Entra ID tokens (checked by the app); client certificates would lock out Logic Apps' managed identity calls
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per invocation; there are no always-ready instances to fail over between
  // checkov:skip=CKV_AZURE_213: Flex Consumption does not use health-check instance replacement; GET /api/status and the health alerts are the app's health
  name: 'func-mccfbackup-${token}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // The Logic Apps designer fetches /api/swagger.json from the portal page (HTTP + Swagger action).
      cors: { allowedOrigins: ['https://portal.azure.com', 'https://ms.portal.azure.com'] }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${functionsStorage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
  dependsOn: [functionsStorageRoles, secretsUser]
}

// Every setting docs/operations.md lists; secrets only as Key Vault references (the app reads its storage secret itself).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: checkov applies web-app checks to this config child resource; every route needs a function key, and Entra ID tokens when authClientId is set (checked by the app, on every plan)
  // checkov:skip=CKV_AZURE_63: checkov applies web-app checks to this config child resource; HTTP logging is a Windows App Service log; Flex Consumption logs requests to Application Insights
  // checkov:skip=CKV_AZURE_65: checkov applies web-app checks to this config child resource; detailed error pages are an App Service (IIS) feature; the API answers problem+json itself
  // checkov:skip=CKV_AZURE_66: checkov applies web-app checks to this config child resource; failed request tracing is an IIS feature; Application Insights records failed requests
  // checkov:skip=CKV_AZURE_80: checkov applies web-app checks to this config child resource; the app runs Python 3.11, not .NET
  // checkov:skip=CKV_AZURE_88: checkov applies web-app checks to this config child resource; the app keeps no files locally; its state is in Azure Storage tables, queues and shares
  // checkov:skip=CKV_AZURE_222: checkov applies web-app checks to this config child resource; answered on the site resource (public API guarded by function keys and optional Entra ID app roles)
  parent: app
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__accountName: functionsStorage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    AZURE_CLIENT_ID: identity.properties.clientId
    MCCF_TARGETS: mccfTargets
    BACKUP_SCHEDULE: backupSchedule
    PRUNE_SCHEDULE: pruneSchedule
    HEALTH_SCHEDULE: healthSchedule
    VERIFY_SCHEDULE: verifySchedule
    SWEEP_SCHEDULE: sweepSchedule
    KEY_VAULT_URL: vault.properties.vaultUri
    STORAGE_SECRET_NAME: storageSecretName
    BACKUP_STORAGE_ACCOUNT_ID: backupStorage.id
    ARM_ENDPOINT: environment().resourceManager
    MCCF_API_VERSION: '2023-06-28-preview'
    RESTORE_REGION: ''
    PUBLIC_BASE_URL: publicBaseUrl
    BACKUP_CONCURRENCY: '8'
    BACKUP_OPERATION_TIMEOUT_MINUTES: '60'
    ARM_TIMEOUT_SECONDS: '60'
    LOST_OPERATION_GRACE_SECONDS: '900'
    BACKUP_FANOUT: backupFanout
    BACKUP_QUEUE_NAME: targetsQueueName
    OPERATIONS_QUEUE_NAME: operationsQueueName
    JOBS_TABLE_NAME: 'mccfbackupjobs'
    RPO_HOURS: '26'
    PIN_WARNING_DAYS: '14'
    VERIFY_MAX_PER_RUN: '10'
    RETENTION_KEEP_LAST: '7'
    RETENTION_DAILY: '7'
    RETENTION_WEEKLY: '4'
    RETENTION_MONTHLY: '3'
    RETENTION_MAX_AGE_DAYS: '0'
    RETENTION_MIN_AGE_HOURS: '24'
    RETENTION_MAX_DELETE_FRACTION: '0.5'
    RETENTION_OVERRIDES: ''
    ALLOW_REPLACE_RESTORE: allowReplaceRestore ? 'true' : 'false'
    RESTORE_ENABLED: 'true'
    ROLE_READ: 'Backup.Read'
    ROLE_BACKUP: 'Backup.Operator'
    ROLE_RESTORE: 'Restore.Operator'
    // Entra ID app roles, checked by the app itself (not Easy Auth, which Flex Consumption lacked in preview)
    AUTH_CLIENT_ID: authClientId
    AUTH_TENANT_ID: subscription().tenantId
    AUTH_AUTHORITY_HOST: environment().authentication.loginEndpoint
  }
}

// --- the Managed CCF permissions: a custom role, assigned on each target's resource group ---
module mccfRoles 'modules/mccf-role.bicep' = [
  for sub in targetSubscriptionIds: {
    name: 'mccf-role-${uniqueString(sub, token)}'
    scope: subscription(sub)
    params: {
      nameSuffix: token
      assignableScopes: ['/subscriptions/${sub}']
      allowReplaceRestore: allowReplaceRestore
    }
  }
]

module mccfRoleAssignments 'modules/mccf-role-assignment.bicep' = [
  for rgId in targetResourceGroupIds: {
    name: 'mccf-role-assignment-${uniqueString(rgId, token)}'
    scope: resourceGroup(split(rgId, '/')[2], split(rgId, '/')[4])
    params: {
      roleDefinitionId: mccfRoles[indexOf(targetSubscriptionIds, split(rgId, '/')[2])].outputs.roleDefinitionId
      principalId: identity.properties.principalId
    }
  }
]

module alerts 'modules/alerts.bicep' = {
  name: 'alerts-${token}'
  params: {
    location: location
    tags: tags
    nameSuffix: token
    insightsId: insights.id
    alertEmail: alertEmail
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook-${token}'
  params: {
    location: location
    tags: tags
    nameSuffix: token
    insightsId: insights.id
  }
}

module logicApps 'modules/logic-apps.bicep' = if (deployLogicApps) {
  name: 'logic-apps-${token}'
  params: {
    location: location
    tags: tags
    nameSuffix: token
    apiBaseUrl: 'https://${app.properties.defaultHostName}/api'
    functionKey: listKeys('${app.id}/host/default', '2024-04-01').functionKeys.default
    restoreApprover: restoreApprover
    apiAudience: empty(authClientId) ? '' : 'api://${authClientId}'
  }
}

output AZURE_FUNCTION_APP_NAME string = app.name
output KEY_VAULT_URL string = vault.properties.vaultUri
output BACKUP_STORAGE_ACCOUNT string = backupStorage.name
output AZURE_CLIENT_ID string = identity.properties.clientId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output ALERT_RULES array = alerts.outputs.ruleNames
output WORKBOOK_ID string = workbook.outputs.workbookId
output LOGIC_APP_PRINCIPAL_IDS array = deployLogicApps ? logicApps.outputs.workflowPrincipalIds : []
