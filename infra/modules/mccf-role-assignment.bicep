// Assigns the mccf-backup operator role to the app's identity on one target resource group.
targetScope = 'resourceGroup'

param roleDefinitionId string
param principalId string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mccf-backup: back up and restore the Managed CCF instances in this resource group'
  }
}
