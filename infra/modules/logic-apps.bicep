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
var backupBeforeChangeText = loadTextContent('../logicapp/backup-before-change.json')
var backupBeforeChange = json(replace(backupBeforeChangeText, 'https://<function app>.azurewebsites.net/api', apiBaseUrl))
var restoreWithApproval = loadJsonContent('../logicapp/restore-with-approval.json')
var restoreBeforeTransaction = loadJsonContent('../logicapp/restore-before-transaction.json')

resource backupWorkflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: 'logic-mccfbackup-backup-before-change-${nameSuffix}'
  location: location
  tags: tags
  properties: {
    state: 'Enabled'
    definition: backupBeforeChange.definition
    parameters: {
      mccfBackupApi: { value: apiBaseUrl }
      functionKey: { value: functionKey }
    }
  }
}

resource restoreWorkflow 'Microsoft.Logic/workflows@2019-05-01' = {
  name: 'logic-mccfbackup-restore-with-approval-${nameSuffix}'
  location: location
  tags: tags
  properties: {
    state: 'Enabled'
    definition: restoreWithApproval.definition
    parameters: {
      mccfBackupApi: { value: apiBaseUrl }
      functionKey: { value: functionKey }
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
  properties: {
    state: 'Enabled'
    definition: restoreBeforeTransaction.definition
    parameters: {
      mccfBackupApi: { value: apiBaseUrl }
      functionKey: { value: functionKey }
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
output office365ConnectionName string = office365.name
