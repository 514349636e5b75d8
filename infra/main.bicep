// mccf-backup: the Functions app (Flex Consumption, user-assigned identity), its storage (identity-based),
// the backup storage account, the Key Vault holding its connection string, and monitoring.
// Work in progress (issue 7): alert rules, the custom Managed CCF role, Easy Auth and the Logic App
// modules are still to come, and this file has not yet been through a Bicep parser or policy scan.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags derive from it')
param environmentName string

@description('Region for every resource')
param location string = resourceGroup().location

@description('Object id of the deploying user, given Key Vault Secrets Officer to manage the secret')
param principalId string = ''

@description('ARM resource IDs of the Managed CCF instances to protect, comma separated (set after deployment if empty)')
param mccfTargets string = ''

@description('NCRONTAB schedules of the timers')
param backupSchedule string = '0 0 2 * * *'
param pruneSchedule string = '0 30 3 * * *'
param healthSchedule string = '0 15 * * * *'
param verifySchedule string = '0 */10 * * * *'

@description('Days a deleted backup share stays recoverable (share soft delete); longer than the pruning window')
@minValue(7)
@maxValue(365)
param shareSoftDeleteDays int = 30

@description('Put a CannotDelete lock on the backup storage account')
param lockBackupStorage bool = true

@description('Where alerts go (an e-mail address); empty for none')
param alertEmail string = ''

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName }
var storageSecretName = 'backup-storage-connection'
var deploymentContainer = 'app-package-${token}'

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
  name: 'stfn${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
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
}

// --- the backup storage account (Azure Files shares written by Managed CCF) ---
resource backupStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stbk${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_ZRS' }
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
  name: 'kv-mccfbk-${take(token, 12)}'
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
    principalType: 'User'
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
  name: 'plan-mccfbackup-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
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

  resource settings 'config' = {
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
      KEY_VAULT_URL: vault.properties.vaultUri
      STORAGE_SECRET_NAME: storageSecretName
      ARM_ENDPOINT: environment().resourceManager
      MCCF_API_VERSION: '2023-06-28-preview'
      RESTORE_REGION: ''
      BACKUP_CONCURRENCY: '8'
      BACKUP_OPERATION_TIMEOUT_MINUTES: '60'
      JOBS_TABLE_NAME: 'mccfbackupjobs'
      RPO_HOURS: '26'
      VERIFY_MAX_PER_RUN: '10'
      RETENTION_KEEP_LAST: '7'
      RETENTION_DAILY: '7'
      RETENTION_WEEKLY: '4'
      RETENTION_MONTHLY: '3'
      RETENTION_MAX_AGE_DAYS: '0'
      RETENTION_MIN_AGE_HOURS: '24'
      RETENTION_MAX_DELETE_FRACTION: '0.5'
      RETENTION_OVERRIDES: ''
      ALLOW_REPLACE_RESTORE: 'false'
      RESTORE_ENABLED: 'true'
      ROLE_READ: 'Backup.Read'
      ROLE_BACKUP: 'Backup.Operator'
      ROLE_RESTORE: 'Restore.Operator'
    }
  }
}

resource alerts 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-mccfbackup-${token}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mccfbackup'
    enabled: true
    emailReceivers: [{ name: 'operators', emailAddress: alertEmail, useCommonAlertSchema: true }]
  }
}

output AZURE_FUNCTION_APP_NAME string = app.name
output KEY_VAULT_URL string = vault.properties.vaultUri
output BACKUP_STORAGE_ACCOUNT string = backupStorage.name
output AZURE_CLIENT_ID string = identity.properties.clientId
