"""Microsoft Graph (Outlook calendar) plugin: events, calendarView, instances, getSchedule; MSAL auth."""
