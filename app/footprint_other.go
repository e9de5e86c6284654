//go:build !linux

package app

import "errors"

// pageOutImage is Linux-only (madvise MADV_PAGEOUT).
func pageOutImage() (int, error) { return 0, errors.ErrUnsupported }
