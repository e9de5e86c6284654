// Package promtext reads samples out of the Prometheus text format, for tests that scrape
// /metrics.
package promtext

import (
	"strconv"
	"strings"
)

// Sum adds up the values of the samples of metric whose label sets contain every one of labels
// (each written as in the exposition, e.g. `reporter="source"`).
func Sum(body, metric string, labels ...string) float64 {
	var sum float64
	for _, v := range samples(body, metric, labels) {
		sum += v
	}
	return sum
}

// Has reports whether at least one sample of metric carries every one of labels.
func Has(body, metric string, labels ...string) bool {
	return len(samples(body, metric, labels)) > 0
}

func samples(body, metric string, labels []string) []float64 {
	var out []float64
next:
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			out = append(out, v)
		}
	}
	return out
}
