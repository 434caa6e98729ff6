package audit

// SetWindowForTest shrinks the checkpoint window (for package audit_test).
func SetWindowForTest(l *Log, w uint64) { l.window = w }
