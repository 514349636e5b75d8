// The Azure Monitor workbook over the app's events in Application Insights: RPO status per target,
// backups and failures over time, verification verdicts, operation durations and the restore window
// left. Its queries (infra/workbook/mccf-backup.workbook.json) read only events and dimensions the
// app emits; tests/infra/test_workbook.py checks them against mccf_backup/events.py.
param location string
param tags object
param nameSuffix string

@description('Application Insights component the app logs to (the workbook\'s data source)')
param insightsId string

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'mccf-backup-workbook', nameSuffix)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'mccf-backup (${nameSuffix})'
    category: 'workbook'
    sourceId: insightsId
    version: 'Notebook/1.0'
    serializedData: loadTextContent('../workbook/mccf-backup.workbook.json')
  }
}

output workbookId string = workbook.id
