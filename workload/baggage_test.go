package workload

import (
	"reflect"
	"strings"
	"testing"
)

func TestWorkloadBaggage(t *testing.T) {
	full := &Workload{UID: "u", Name: "sleep-5d8f7c-x2k4q", Namespace: "default", ClusterID: "Kubernetes",
		WorkloadName: "sleep", WorkloadType: "deployment", CanonicalName: "sleep-app", CanonicalRevision: "v1",
		Locality: Locality{Region: "eu-west1", Zone: "eu-west1-b", Subzone: "rack7"}}
	for _, c := range []struct {
		name string
		w    *Workload
		want string
	}{
		{"full", full, "k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=sleep," +
			"service.name=sleep-app,service.version=v1,cloud.region=eu-west1,cloud.availability_zone=eu-west1-b"},
		{"pod", &Workload{Namespace: "ns", WorkloadName: "solo", WorkloadType: "pod"}, "k8s.namespace.name=ns,k8s.pod.name=solo"},
		{"no type", &Workload{WorkloadName: "w"}, "k8s.deployment.name=w"},
		{"type without name", &Workload{WorkloadType: "job", CanonicalName: "c"}, "service.name=c"},
		{"nothing", &Workload{UID: "u", Name: "n"}, ""},
	} {
		if got := c.w.Baggage(); got != c.want {
			t.Errorf("%s: Baggage() = %q, want %q", c.name, got, c.want)
		}
	}

	// The store computes it once, and gives the same.
	s := NewStore()
	w := *full
	w.WorkloadIPs = nil
	if err := s.Apply(Update{Workloads: []*Workload{&w}}); err != nil {
		t.Fatal(err)
	}
	got := s.Snapshot().WorkloadByUID("u")
	if got.baggage == "" || got.Baggage() != full.Baggage() {
		t.Errorf("stored workload: cached %q, Baggage() %q, want %q", got.baggage, got.Baggage(), full.Baggage())
	}
}

func TestFromBaggage(t *testing.T) {
	for _, c := range []struct {
		in   string
		want *Workload // nil: nothing named
	}{
		{"k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2,service.version=V1",
			&Workload{ClusterID: "K1", Namespace: "NS1", WorkloadName: "N1", CanonicalName: "N2", CanonicalRevision: "V1"}},
		{"k8s.cronjob.name=cj,cloud.region=r,cloud.availability_zone=z",
			&Workload{WorkloadName: "cj", Locality: Locality{Region: "r", Zone: "z"}}},
		{"k8s.job.name=j", &Workload{WorkloadName: "j"}},
		{"k8s.pod.name=p", &Workload{WorkloadName: "p"}},
		// W3C form: whitespace around members, properties after ';', unknown keys.
		{" k8s.namespace.name = ns ;meta=1, userId=alice,service.name=app;x", &Workload{Namespace: "ns", CanonicalName: "app"}},
		// A later member wins, and an empty value clears.
		{"service.name=a,service.name=b,service.version=v,service.version=", &Workload{CanonicalName: "b"}},
		{"", nil},
		{"userId=alice,,=,novalue", nil},
		{"service.name=", nil},
		{"service.name=a,service.name=", nil}, // named, then cleared
	} {
		got := FromBaggage(c.in)
		if c.want == nil {
			if got != nil {
				t.Errorf("FromBaggage(%q) = %+v, want nil", c.in, got)
			}
			continue
		}
		c.want.Derived = true
		if got == nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("FromBaggage(%q) =\n %+v, want\n %+v", c.in, got, c.want)
		}
	}
}

// FuzzFromBaggage: any header value parses without panicking into nil or a derived workload
// that names something and has nothing a baggage header cannot give; a workload's own
// Baggage, its values free of the separators, reads back as the same fields.
func FuzzFromBaggage(f *testing.F) {
	f.Add("k8s.cluster.name=K1,k8s.namespace.name=NS1,k8s.deployment.name=N1,service.name=N2", "ns", "w", "app", "v1", "r")
	f.Add(" k8s.namespace.name = ns ;p=1,x=y", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, header, ns, name, app, rev, region string) {
		if w := FromBaggage(header); w != nil {
			if !w.Derived || w.UID != "" || w.Name != "" || w.WorkloadIPs != nil || w.ServiceAccount != "" {
				t.Fatalf("FromBaggage(%q) = %+v", header, w)
			}
			if w.Namespace+w.ClusterID+w.WorkloadName+w.CanonicalName+w.CanonicalRevision+w.Locality.Region+w.Locality.Zone == "" {
				t.Fatalf("FromBaggage(%q) named nothing but is not nil", header)
			}
		}
		for _, v := range []string{ns, name, app, rev, region} {
			if strings.ContainsAny(v, ",;=") || strings.TrimSpace(v) != v {
				return
			}
		}
		src := &Workload{Namespace: ns, WorkloadName: name, WorkloadType: "pod", CanonicalName: app, CanonicalRevision: rev,
			Locality: Locality{Region: region}}
		back := FromBaggage(src.Baggage())
		if src.Baggage() == "" {
			if back != nil {
				t.Fatalf("empty baggage read back as %+v", back)
			}
			return
		}
		want := Workload{Namespace: ns, WorkloadName: name, CanonicalName: app, CanonicalRevision: rev,
			Locality: Locality{Region: region}, Derived: true}
		if back == nil || !reflect.DeepEqual(*back, want) {
			t.Fatalf("FromBaggage(%q) = %+v, want %+v", src.Baggage(), back, want)
		}
	})
}
