//go:build !unix

package station

import "errors"

// diskSpace is not measured on this system: the check says so.
func diskSpace(string) (space, error) {
	return space{}, errors.New("free space not measured on this system")
}
