package promtext

import "testing"

const body = `# HELP istio_tcp_sent_bytes_total x
# TYPE istio_tcp_sent_bytes_total counter
istio_tcp_sent_bytes_total{reporter="source",source_workload="a"} 10
istio_tcp_sent_bytes_total{reporter="destination",source_workload="a"} 7
istio_tcp_sent_bytes_total{reporter="source",source_workload="b"} 5
istio_tcp_sent_bytes_total_extra{reporter="source"} 100
istio_build 1
`

func TestSum(t *testing.T) {
	cases := []struct {
		metric string
		labels []string
		want   float64
	}{
		{"istio_tcp_sent_bytes_total", nil, 22},
		{"istio_tcp_sent_bytes_total", []string{`reporter="source"`}, 15},
		{"istio_tcp_sent_bytes_total", []string{`reporter="source"`, `source_workload="b"`}, 5},
		{"istio_tcp_sent_bytes_total", []string{`reporter="nobody"`}, 0},
		{"istio_build", nil, 1},
	}
	for _, c := range cases {
		if got := Sum(body, c.metric, c.labels...); got != c.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}
	if !Has(body, "istio_build") || Has(body, "istio_tcp_sent_bytes_total", `reporter="x"`) {
		t.Error("Has is wrong")
	}
}
