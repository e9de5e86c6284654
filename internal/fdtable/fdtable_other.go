//go:build !linux

package fdtable

import "errors"

// Reserve does nothing where the table's growth is not known to stall other threads.
func Reserve(int) error { return nil }

// SizeOf is not known outside Linux.
func SizeOf(int) (int, error) { return 0, errors.ErrUnsupported }
