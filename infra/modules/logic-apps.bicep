// The Logic Apps samples of infra/logicapp/, wired to this deployment's API (optional module).
// The approval mail goes through an Office 365 Outlook connection, which someone must authorize
// once in the portal after deployment (API connections cannot be consented to from a template).
param location string
param tags object
param nameSuffix string

@description('https://<function app host>/api')
param apiBaseUrl string

@description('The function key the workflows send as ?code=')
@secure()
param functionKey string

@description('Who approves a restore (e-mail)')
param restoreApprover string

@description('api://<AUTH_CLIENT_ID> when the API requires Entra ID tokens; empty: the function key alone')
param apiAudience string

// Each HTTP action to the API holds this line in infra/logicapp/ (one line, so that it can be taken out
// whole): with Entra ID off, the workflows send the function key alone, and no identity token.
var identityAuthentication = '"authentication": {"type": "ManagedServiceIdentity", "audience": "@parameters(\'apiAudience\')"},'
var removedLine = empty(apiAudience) ? identityAuthentication : '<nothing to remove>'

resource office365 'Microsoft.Web/connections@2016-06-01' = {
  name: 'office365-mccfbackup-${nameSuffix}'
  location: location
  tags: tags
  properties: {
    displayName: 'mccf-backup restore approvals'
    api: { id: subscriptionResourceId('Microsoft.Web/locations/managedApis', location, 'office365') }
  }
}

// Its HTTP + Swagger action names the API document of this deployment, for the designer.
var backupBeforeChangeText = replace(loadTextContent('../logicapp/backup-before-change.json'), removedLine, '')
var backupBeforeChange = json(replace(backupBeforeChangeText, 'https://<function app>.azurewebsites.net/api', apiBaseUrl))
var restoreWithApproval = json(replace(loadTextContent('../logicapp/restore-with-approval.json'), removedLine, ''))
var restoreBeforeTransaction = json(
  replace(loadTextContent('../logicapp/restore-before-transaction.json'), removedLine, '')
)

resource backupWorkflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: 'logic-mccfbackup-backup-before-change-${nameSuffix}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' } // its token for the API, when Entra ID guards it (apiAudience)
  properties: {
    state: 'Enabled'
    definition: backupBeforeChange.definition
    parameters: {
      mccfBackupApi: { value: apiBaseUrl }
      functionKey: { value: functionKey }
      apiAudience: { value: apiAudience }
    }
  }
}

resource restoreWorkflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: 'logic-mccfbackup-restore-with-approval-${nameSuffix}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' } // its token for the API, when Entra ID guards it (apiAudience)
  properties: {
    state: 'Enabled'
    definition: restoreWithApproval.definition
    parameters: {
      mccfBackupApi: { value: apiBaseUrl }
      functionKey: { value: functionKey }
      apiAudience: { value: apiAudience }
      approver: { value: restoreApprover }
      '$connections': {
        value: {
          office365: {
            connectionId: office365.id
            connectionName: office365.name
            id: office365.properties.api.id
          }
        }
      }
    }
  }
}

resource restoreBeforeWorkflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: 'logic-mccfbackup-restore-before-transaction-${nameSuffix}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' } // its token for the API, when Entra ID guards it (apiAudience)
  properties: {
    state: 'Enabled'
    definition: restoreBeforeTransaction.definition
    parameters: {
      mccfBackupApi: { value: apiBaseUrl }
      functionKey: { value: functionKey }
      apiAudience: { value: apiAudience }
      approver: { value: restoreApprover }
      '$connections': {
        value: {
          office365: {
            connectionId: office365.id
            connectionName: office365.name
            id: office365.properties.api.id
          }
        }
      }
    }
  }
}

output workflowNames array = [backupWorkflow.name, restoreWorkflow.name, restoreBeforeWorkflow.name]
// Who needs which of the API's app roles (docs/deploy.md, "Entra ID app roles"): Backup.Operator for the
// first, Restore.Operator for the other two.
output workflowPrincipalIds array = [
  backupWorkflow.identity.principalId
  restoreWorkflow.identity.principalId
  restoreBeforeWorkflow.identity.principalId
]
output office365ConnectionName string = office365.name
