// Log search alert rules on the app's Application Insights: the signals of docs/operations.md's
// "Health, alerts and events" (one `MCCFBACKUP_EVENT {json}` trace per event) and failed timer invocations.
param location string
param tags object
param nameSuffix string

@description('Application Insights component the app logs to')
param insightsId string

@description('Where alerts go (an e-mail address); empty: rules fire into the portal only')
param alertEmail string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-mccfbackup-${nameSuffix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'mccfbackup'
    enabled: true
    emailReceivers: [{ name: 'operators', emailAddress: alertEmail, useCommonAlertSchema: true }]
  }
}

// Every event trace, parsed once; each rule filters it.
var eventsQuery = 'traces | where message startswith "MCCFBACKUP_EVENT" | extend e = parse_json(substring(message, 17)) | extend event = tostring(e.event), target = tostring(e.target)'

var rules = [
  {
    name: 'scheduled-backup-failed'
    displayName: 'mccf-backup: a scheduled backup failed'
    description: 'A target failed in the scheduled backup run, or the run itself failed (for example invalid settings). Check the job history: mccf-backup jobs --target <target>.'
    severity: 1
    frequency: 'PT15M'
    query: 'union (${eventsQuery} | where event == "backup.failure" and tostring(e.trigger) == "timer" | project timestamp, target, code = tostring(e.code)), (requests | where name == "scheduled_backup" and success == false | project timestamp, target = "", code = "invocation_failed")'
  }
  {
    name: 'rpo-breach'
    displayName: 'mccf-backup: a target is outside its RPO'
    description: 'No good backup within RPO_HOURS for a target (health.rpo_breach): the schedule stopped or every backup fails.'
    severity: 1
    frequency: 'PT1H'
    query: '${eventsQuery} | where event == "health.rpo_breach" | summarize count() by target'
  }
  {
    name: 'verify-failed'
    displayName: 'mccf-backup: a backup failed verification'
    description: 'A backup share did not verify as a CCF ledger (verify.failure); it is held as evidence and not used for restore.'
    severity: 2
    frequency: 'PT1H'
    query: '${eventsQuery} | where event == "verify.failure" | project timestamp, target, share = tostring(e.share), reason = tostring(e.reason)'
  }
  {
    name: 'restore-started'
    displayName: 'mccf-backup: a restore started'
    description: 'Informational: someone or something started a restore (restore.attempt).'
    severity: 3
    frequency: 'PT5M'
    query: '${eventsQuery} | where event == "restore.attempt" | project timestamp, target, trigger = tostring(e.trigger)'
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for rule in rules: {
    name: 'alert-mccfbackup-${rule.name}-${nameSuffix}'
    location: location
    tags: tags
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [insightsId]
      evaluationFrequency: rule.frequency
      windowSize: rule.frequency
      autoMitigate: false
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
          }
        ]
      }
      actions: { actionGroups: empty(alertEmail) ? [] : [actionGroup.id] }
    }
  }
]

output ruleNames array = [for (rule, i) in rules: alertRules[i].name]
