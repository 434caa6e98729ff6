package audit

import "unsafe"

// unsafeString views b as a string without copying; the caller must not keep
// the string past b's next modification.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
