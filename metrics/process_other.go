//go:build !linux

package metrics

import "github.com/prometheus/client_golang/prometheus"

// procReader reads nothing where there is no /proc: the process_* metrics are Linux's.
type procReader struct{}

func (p *procReader) init()                               {}
func (p *procReader) collect(ch chan<- prometheus.Metric) {}
func describeProcess(ch chan<- *prometheus.Desc)          {}
