// The custom role the app's identity holds on the resource groups of its targets. No built-in role
// grants Managed CCF backup and restore without also granting write on the instances; this one
// grants exactly what mccf-backup calls, and delete only when replace-restore is enabled.
targetScope = 'subscription'

@description('Unique per deployment; keeps the role name unique in the tenant')
param nameSuffix string

@description('Resource group IDs the role may be assigned on (the targets\' resource groups)')
param assignableScopes array

@description('Add managedCCFs/delete and ledgers/delete, which a replace-restore needs')
param allowReplaceRestore bool

var readBackupRestore = [
  'Microsoft.ConfidentialLedger/managedCCFs/read'
  'Microsoft.ConfidentialLedger/managedCCFs/backup/action'
  'Microsoft.ConfidentialLedger/managedCCFs/restore/action'
  'Microsoft.ConfidentialLedger/ledgers/read'
  'Microsoft.ConfidentialLedger/ledgers/backup/action'
  'Microsoft.ConfidentialLedger/ledgers/restore/action'
]
var deleteForReplace = [
  'Microsoft.ConfidentialLedger/managedCCFs/delete'
  'Microsoft.ConfidentialLedger/ledgers/delete'
]

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  // A new seed from 03060c4 on: the earlier single role (seed 'mccf-backup-operator') had resource-group
  // scopes, and reusing its id would shrink them while its assignments still use them.
  name: guid(subscription().id, 'mccf-backup-operator-per-subscription', nameSuffix)
  properties: {
    roleName: 'mccf-backup operator (${nameSuffix}, ${subscription().subscriptionId})' // unique in the tenant
    description: 'Read, back up and restore Managed CCF instances and Confidential Ledgers${allowReplaceRestore ? ', and delete them for a replace-restore' : ''}. Used by mccf-backup.'
    type: 'CustomRole'
    permissions: [
      {
        actions: allowReplaceRestore ? concat(readBackupRestore, deleteForReplace) : readBackupRestore
        notActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

output roleDefinitionId string = role.id
output actions array = allowReplaceRestore ? concat(readBackupRestore, deleteForReplace) : readBackupRestore
