package render

import (
	"flag"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var update = flag.Bool("update", false, "rewrite manifests/ztunnel.yaml from the chart")

const (
	chartDir     = "../../charts/ztunnel"
	manifestFile = "../../manifests/ztunnel.yaml"
)

// rendered is a chart rendering decoded into typed objects.
type rendered struct {
	objs []Object
}

// render renders the chart with values and decodes the result strictly.
func render(t *testing.T, values map[string]any) *rendered {
	t.Helper()
	m, err := Chart(chartDir, values, Options{KubeVersion: "v1.34.0"})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	objs, err := Decode(m)
	if err != nil {
		t.Fatalf("strict decode: %v\n%s", err, m)
	}
	return &rendered{objs: objs}
}

// kinds lists the rendered objects as "Kind/name".
func (r *rendered) kinds() []string {
	var out []string
	for _, o := range r.objs {
		type named interface{ GetName() string }
		out = append(out, o.GVK.Kind+"/"+o.Obj.(named).GetName())
	}
	return out
}

func (r *rendered) daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range r.objs {
		if ds, ok := o.Obj.(*appsv1.DaemonSet); ok {
			return ds
		}
	}
	t.Fatalf("no DaemonSet in %v", r.kinds())
	return nil
}

func (r *rendered) serviceAccount(t *testing.T) *corev1.ServiceAccount {
	t.Helper()
	for _, o := range r.objs {
		if sa, ok := o.Obj.(*corev1.ServiceAccount); ok {
			return sa
		}
	}
	t.Fatalf("no ServiceAccount in %v", r.kinds())
	return nil
}

// container is the ztunnel container of the DaemonSet.
func (r *rendered) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := r.daemonSet(t).Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "istio-proxy" {
		t.Fatalf("containers = %+v, want one named istio-proxy", cs)
	}
	return cs[0]
}

// env returns the container's literal environment values by name; a variable taken from
// the downward API maps to "<fieldPath>" or "<resource>".
func (r *rendered) env(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range r.container(t).Env {
		if _, dup := out[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			out[e.Name] = "<" + e.ValueFrom.FieldRef.FieldPath + ">"
		case e.ValueFrom.ResourceFieldRef != nil:
			out[e.Name] = "<" + e.ValueFrom.ResourceFieldRef.Resource + ">"
		}
	}
	return out
}

func (r *rendered) volume(t *testing.T, name string) corev1.Volume {
	t.Helper()
	for _, v := range r.daemonSet(t).Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return corev1.Volume{}
}

func ptr[T any](v T) *T { return &v }

func TestDefaults(t *testing.T) {
	r := render(t, nil)
	if got, want := r.kinds(), []string{"ServiceAccount/ztunnel", "DaemonSet/ztunnel"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("objects = %v, want %v (what Istio's chart renders by default)", got, want)
	}
	ds := r.daemonSet(t)
	pod := ds.Spec.Template.Spec
	c := r.container(t)
	env := r.env(t)

	falseP, trueP := ptr(false), ptr(true)
	tests := []struct {
		name      string
		got, want any
	}{
		{"namespace", ds.Namespace, "istio-system"},
		{"selector", ds.Spec.Selector.MatchLabels, map[string]string{"app": "ztunnel"}},
		{"pod label app", ds.Spec.Template.Labels["app"], "ztunnel"},
		{"pod label dataplane-mode", ds.Spec.Template.Labels["istio.io/dataplane-mode"], "none"},
		{"pod label inject", ds.Spec.Template.Labels["sidecar.istio.io/inject"], "false"},
		{"pod annotations", ds.Spec.Template.Annotations, map[string]string{
			"sidecar.istio.io/inject": "false", "prometheus.io/port": "15020", "prometheus.io/scrape": "true"}},
		{"update strategy", ds.Spec.UpdateStrategy, appsv1.DaemonSetUpdateStrategy{
			Type: appsv1.RollingUpdateDaemonSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDaemonSet{
				MaxSurge: ptr(intstr.FromInt32(1)), MaxUnavailable: ptr(intstr.FromInt32(0))}}},
		{"service account", pod.ServiceAccountName, "ztunnel"},
		{"node selector", pod.NodeSelector, map[string]string{"kubernetes.io/os": "linux"}},
		{"priority class", pod.PriorityClassName, "system-node-critical"},
		{"grace period", pod.TerminationGracePeriodSeconds, ptr(int64(30))},
		{"tolerations", pod.Tolerations, []corev1.Toleration{
			{Effect: corev1.TaintEffectNoSchedule, Operator: corev1.TolerationOpExists},
			{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
			{Effect: corev1.TaintEffectNoExecute, Operator: corev1.TolerationOpExists}}},
		{"host network", pod.HostNetwork, false},
		{"image", c.Image, "ghcr.io/ztunnel-go/ztunnel:0.1.0"},
		{"pull policy", c.ImagePullPolicy, corev1.PullPolicy("")},
		{"command", c.Command, []string(nil)},
		{"args", c.Args, []string{"proxy", "ztunnel"}},
		{"ports", c.Ports, []corev1.ContainerPort{
			{Name: "ztunnel-stats", ContainerPort: 15020, Protocol: corev1.ProtocolTCP},
			{Name: "ztunnel-health", ContainerPort: 15021, Protocol: corev1.ProtocolTCP}}},
		{"readiness", c.ReadinessProbe.HTTPGet, &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)}},
		{"requests", c.Resources.Requests.Cpu().String() + " " + c.Resources.Requests.Memory().String(), "200m 512Mi"},
		{"limits", len(c.Resources.Limits), 0},
		{"security", c.SecurityContext, &corev1.SecurityContext{
			Privileged:               falseP,
			AllowPrivilegeEscalation: trueP,
			ReadOnlyRootFilesystem:   trueP,
			RunAsNonRoot:             falseP,
			RunAsUser:                ptr(int64(0)),
			RunAsGroup:               ptr(int64(1337)),
			Capabilities: &corev1.Capabilities{
				Drop: []corev1.Capability{"ALL"},
				Add:  []corev1.Capability{"NET_ADMIN", "SYS_ADMIN", "NET_RAW"}},
		}},
		{"env", env, map[string]string{
			"CA_ADDRESS":                       "istiod.istio-system.svc:15012",
			"XDS_ADDRESS":                      "istiod.istio-system.svc:15012",
			"RUST_LOG":                         "info",
			"ISTIO_META_CLUSTER_ID":            "Kubernetes",
			"INPOD_ENABLED":                    "true",
			"TERMINATION_GRACE_PERIOD_SECONDS": "30",
			"POD_NAME":                         "<metadata.name>",
			"POD_NAMESPACE":                    "<metadata.namespace>",
			"NODE_NAME":                        "<spec.nodeName>",
			"INSTANCE_IP":                      "<status.podIP>",
			"SERVICE_ACCOUNT":                  "<spec.serviceAccountName>",
			"ZTUNNEL_CPU_LIMIT":                "<limits.cpu>",
		}},
		{"mounts", c.VolumeMounts, []corev1.VolumeMount{
			{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio"},
			{Name: "istio-token", MountPath: "/var/run/secrets/tokens"},
			{Name: "cni-ztunnel-sock-dir", MountPath: "/var/run/ztunnel"},
			{Name: "tmp", MountPath: "/tmp"}}},
		{"token volume", r.volume(t, "istio-token").Projected.Sources, []corev1.VolumeProjection{{
			ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Path: "istio-token", ExpirationSeconds: ptr(int64(43200)), Audience: "istio-ca"}}}},
		{"root cert volume", r.volume(t, "istiod-ca-cert").ConfigMap.Name, "istio-ca-root-cert"},
		{"socket dir volume", r.volume(t, "cni-ztunnel-sock-dir").HostPath, &corev1.HostPathVolumeSource{
			Path: "/var/run/ztunnel", Type: ptr(corev1.HostPathDirectoryOrCreate)}},
		{"tmp volume", r.volume(t, "tmp").EmptyDir, &corev1.EmptyDirVolumeSource{}},
		{"volume count", len(pod.Volumes), 4},
		{"pull secrets", r.serviceAccount(t).ImagePullSecrets, []corev1.LocalObjectReference(nil)},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

func TestOverrides(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		got    func(t *testing.T, r *rendered) any
		want   any
	}{
		{
			name:   "hub tag variant",
			values: map[string]any{"hub": "registry.example/mesh", "tag": "v1.2.3", "variant": "debug"},
			got:    func(t *testing.T, r *rendered) any { return r.container(t).Image },
			want:   "registry.example/mesh/ztunnel:v1.2.3-debug",
		},
		{
			name:   "full image reference",
			values: map[string]any{"image": "registry.example/ztunnel-go@sha256:abc", "tag": "ignored"},
			got:    func(t *testing.T, r *rendered) any { return r.container(t).Image },
			want:   "registry.example/ztunnel-go@sha256:abc",
		},
		{
			name:   "global hub and tag",
			values: map[string]any{"global": map[string]any{"hub": "g.example", "tag": "1.0"}},
			got:    func(t *testing.T, r *rendered) any { return r.container(t).Image },
			want:   "g.example/ztunnel:1.0",
		},
		{
			name: "top level wins over global",
			values: map[string]any{"tag": "top",
				"global": map[string]any{"hub": "g.example", "tag": "global"}},
			got:  func(t *testing.T, r *rendered) any { return r.container(t).Image },
			want: "g.example/ztunnel:top",
		},
		{
			name:   "image pull policy",
			values: map[string]any{"imagePullPolicy": "Always"},
			got:    func(t *testing.T, r *rendered) any { return r.container(t).ImagePullPolicy },
			want:   corev1.PullAlways,
		},
		{
			name: "resources",
			values: map[string]any{"resources": map[string]any{
				"requests": map[string]any{"cpu": "1", "memory": "1Gi"},
				"limits":   map[string]any{"cpu": "2"}}},
			got: func(t *testing.T, r *rendered) any {
				res := r.container(t).Resources
				return res.Requests.Cpu().String() + " " + res.Requests.Memory().String() + " " + res.Limits.Cpu().String()
			},
			want: "1 1Gi 2",
		},
		{
			name: "env and proxyMetadata",
			values: map[string]any{
				"env": map[string]any{"XDS_ON_DEMAND": "true", "POOL_MAX_STREAMS_PER_CONNECTION": 50, "QUOTED": `a "b"`},
				"meshConfig": map[string]any{"defaultConfig": map[string]any{
					"proxyMetadata": map[string]any{"DNS_CAPTURE": true}}}},
			got: func(t *testing.T, r *rendered) any {
				env := r.env(t)
				return []string{env["XDS_ON_DEMAND"], env["POOL_MAX_STREAMS_PER_CONNECTION"], env["QUOTED"], env["DNS_CAPTURE"]}
			},
			want: []string{"true", "50", `a "b"`, "true"},
		},
		{
			name:   "termination grace period",
			values: map[string]any{"terminationGracePeriodSeconds": 90},
			got: func(t *testing.T, r *rendered) any {
				return []any{*r.daemonSet(t).Spec.Template.Spec.TerminationGracePeriodSeconds, r.env(t)["TERMINATION_GRACE_PERIOD_SECONDS"]}
			},
			want: []any{int64(90), "90"},
		},
		{
			name:   "node selector adds to the OS",
			values: map[string]any{"nodeSelector": map[string]any{"pool": "mesh"}},
			got:    func(t *testing.T, r *rendered) any { return r.daemonSet(t).Spec.Template.Spec.NodeSelector },
			want:   map[string]string{"kubernetes.io/os": "linux", "pool": "mesh"},
		},
		{
			name:   "tolerations replace the defaults",
			values: map[string]any{"tolerations": []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "mesh", "effect": "NoSchedule"}}},
			got:    func(t *testing.T, r *rendered) any { return r.daemonSet(t).Spec.Template.Spec.Tolerations },
			want: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "mesh",
				Effect: corev1.TaintEffectNoSchedule}},
		},
		{
			name: "affinity",
			values: map[string]any{"affinity": map[string]any{"nodeAffinity": map[string]any{
				"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{"nodeSelectorTerms": []any{
					map[string]any{"matchExpressions": []any{map[string]any{"key": "k", "operator": "Exists"}}}}}}}},
			got: func(t *testing.T, r *rendered) any {
				return r.daemonSet(t).Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key
			},
			want: "k",
		},
		{
			name:   "pod annotations and labels",
			values: map[string]any{"podAnnotations": map[string]any{"a": "1"}, "podLabels": map[string]any{"team": "net"}},
			got: func(t *testing.T, r *rendered) any {
				tpl := r.daemonSet(t).Spec.Template
				return []string{tpl.Annotations["a"], tpl.Annotations["prometheus.io/port"], tpl.Labels["team"], tpl.Labels["app"]}
			},
			want: []string{"1", "15020", "net", "ztunnel"},
		},
		{
			name:   "priority class",
			values: map[string]any{"priorityClassName": "mesh-critical"},
			got:    func(t *testing.T, r *rendered) any { return r.daemonSet(t).Spec.Template.Spec.PriorityClassName },
			want:   "mesh-critical",
		},
		{
			name:   "xds and ca addresses",
			values: map[string]any{"xdsAddress": "istiod.mesh.example:15012", "caAddress": "ca.mesh.example:15012"},
			got: func(t *testing.T, r *rendered) any {
				env := r.env(t)
				return []string{env["XDS_ADDRESS"], env["CA_ADDRESS"]}
			},
			want: []string{"istiod.mesh.example:15012", "ca.mesh.example:15012"},
		},
		{
			name:   "revision and istio namespace",
			values: map[string]any{"revision": "canary", "istioNamespace": "mesh"},
			got: func(t *testing.T, r *rendered) any {
				ds := r.daemonSet(t)
				env := r.env(t)
				return []string{env["XDS_ADDRESS"], env["CA_ADDRESS"], ds.Annotations["istio.io/rev"],
					ds.Spec.Template.Annotations["istio.io/rev"], r.serviceAccount(t).Annotations["istio.io/rev"]}
			},
			want: []string{"istiod-canary.mesh.svc:15012", "istiod-canary.mesh.svc:15012", "canary", "canary", "canary"},
		},
		{
			name:   "global istio namespace",
			values: map[string]any{"global": map[string]any{"istioNamespace": "mesh-system"}},
			got:    func(t *testing.T, r *rendered) any { return r.env(t)["XDS_ADDRESS"] },
			want:   "istiod.mesh-system.svc:15012",
		},
		{
			name:   "log level and JSON",
			values: map[string]any{"logLevel": "debug", "logAsJson": true},
			got: func(t *testing.T, r *rendered) any {
				env := r.env(t)
				return []string{env["RUST_LOG"], env["LOG_FORMAT"]}
			},
			want: []string{"debug", "json"},
		},
		{
			name:   "multicluster and network",
			values: map[string]any{"multiCluster": map[string]any{"clusterName": "east"}, "network": "net-east"},
			got: func(t *testing.T, r *rendered) any {
				env := r.env(t)
				return []string{env["ISTIO_META_CLUSTER_ID"], env["NETWORK"]}
			},
			want: []string{"east", "net-east"},
		},
		{
			name: "global multicluster and network",
			values: map[string]any{"global": map[string]any{
				"multiCluster": map[string]any{"clusterName": "west"}, "network": "net-west"}},
			got: func(t *testing.T, r *rendered) any {
				env := r.env(t)
				return []string{env["ISTIO_META_CLUSTER_ID"], env["NETWORK"]}
			},
			want: []string{"west", "net-west"},
		},
		{
			name:   "resource name",
			values: map[string]any{"resourceName": "ztunnel-go"},
			got: func(t *testing.T, r *rendered) any {
				return append(r.kinds(), r.daemonSet(t).Spec.Template.Spec.ServiceAccountName)
			},
			want: []string{"ServiceAccount/ztunnel-go", "DaemonSet/ztunnel-go", "ztunnel-go"},
		},
		{
			name:   "image pull secrets",
			values: map[string]any{"imagePullSecrets": []any{"regcred"}},
			got:    func(t *testing.T, r *rendered) any { return r.serviceAccount(t).ImagePullSecrets },
			want:   []corev1.LocalObjectReference{{Name: "regcred"}},
		},
		{
			name: "labels and annotations on objects",
			values: map[string]any{"labels": map[string]any{"owner": "net"},
				"annotations": map[string]any{"note": "x"}},
			got: func(t *testing.T, r *rendered) any {
				ds, sa := r.daemonSet(t), r.serviceAccount(t)
				return []string{ds.Labels["owner"], ds.Annotations["note"], sa.Labels["owner"], sa.Annotations["note"]}
			},
			want: []string{"net", "x", "net", "x"},
		},
		{
			name: "extra volumes",
			values: map[string]any{
				"volumes":      []any{map[string]any{"name": "extra", "emptyDir": map[string]any{}}},
				"volumeMounts": []any{map[string]any{"name": "extra", "mountPath": "/extra"}}},
			got: func(t *testing.T, r *rendered) any {
				ms := r.container(t).VolumeMounts
				return []string{r.volume(t, "extra").Name, ms[len(ms)-1].MountPath}
			},
			want: []string{"extra", "/extra"},
		},
		{
			name:   "cluster trust bundle",
			values: map[string]any{"env": map[string]any{"ENABLE_CLUSTER_TRUST_BUNDLE_API": true}},
			got: func(t *testing.T, r *rendered) any {
				v := r.volume(t, "istiod-ca-cert")
				if v.ConfigMap != nil {
					return "configMap"
				}
				b := v.Projected.Sources[0].ClusterTrustBundle
				return *b.Name + " " + b.Path
			},
			want: "istio.io:istiod-ca:root-cert root-cert.pem",
		},
		{
			name:   "trust bundle name",
			values: map[string]any{"trustBundleName": "mesh-root"},
			got:    func(t *testing.T, r *rendered) any { return r.volume(t, "istiod-ca-cert").ConfigMap.Name },
			want:   "mesh-root",
		},
		{
			name:   "selinux",
			values: map[string]any{"seLinuxOptions": map[string]any{"type": "spc_t"}},
			got:    func(t *testing.T, r *rendered) any { return r.container(t).SecurityContext.SELinuxOptions.Type },
			want:   "spc_t",
		},
		{
			name:   "update strategy",
			values: map[string]any{"updateStrategy": map[string]any{"type": "OnDelete", "rollingUpdate": nil}},
			got:    func(t *testing.T, r *rendered) any { return r.daemonSet(t).Spec.UpdateStrategy.Type },
			want:   appsv1.OnDeleteDaemonSetStrategyType,
		},
		{
			name:   "openshift profile",
			values: map[string]any{"profile": "openshift"},
			got: func(t *testing.T, r *rendered) any {
				for _, o := range r.objs {
					if b, ok := o.Obj.(*rbacv1.ClusterRoleBinding); ok {
						return append(r.kinds(), b.Subjects[0].Namespace+"/"+b.Subjects[0].Name)
					}
				}
				return r.kinds()
			},
			want: []string{"ServiceAccount/ztunnel", "ClusterRole/ztunnel", "ClusterRoleBinding/ztunnel", "DaemonSet/ztunnel", "istio-system/ztunnel"},
		},
		{
			name:   "ambient profile changes nothing",
			values: map[string]any{"profile": "ambient"},
			got:    func(t *testing.T, r *rendered) any { return r.kinds() },
			want:   []string{"ServiceAccount/ztunnel", "DaemonSet/ztunnel"},
		},
		{
			name:   "resource quota",
			values: map[string]any{"resourceQuotas": map[string]any{"enabled": true}},
			got:    func(t *testing.T, r *rendered) any { return r.kinds() },
			want:   []string{"ResourceQuota/ztunnel", "ServiceAccount/ztunnel", "DaemonSet/ztunnel"},
		},
		{
			name:   "network policy",
			values: map[string]any{"global": map[string]any{"networkPolicy": map[string]any{"enabled": true}}},
			got: func(t *testing.T, r *rendered) any {
				for _, o := range r.objs {
					if np, ok := o.Obj.(*networkingv1.NetworkPolicy); ok {
						var ports []int32
						for _, p := range np.Spec.Ingress[0].Ports {
							ports = append(ports, p.Port.IntVal)
						}
						return ports
					}
				}
				return r.kinds()
			},
			want: []int32{15020, 15021, 15000},
		},
		{
			name:   "cluster scope only",
			values: map[string]any{"resourceScope": "CLUSTER", "platform": "openshift"},
			got:    func(t *testing.T, r *rendered) any { return r.kinds() },
			want:   []string{"ClusterRole/ztunnel", "ClusterRoleBinding/ztunnel"},
		},
		{
			name:   "namespace scope only",
			values: map[string]any{"resourceScope": "namespace", "platform": "openshift"},
			got:    func(t *testing.T, r *rendered) any { return r.kinds() },
			want:   []string{"ServiceAccount/ztunnel", "DaemonSet/ztunnel"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, tt.values)
			if got := tt.got(t, r); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown profile", map[string]any{"profile": "nope"}, `unknown profile "nope"`},
		{"bad resource scope", map[string]any{"resourceScope": "SOME"}, `resourceScope "SOME"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Chart(chartDir, tt.values, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestLint runs `helm lint`'s checks (Chart.yaml, values, templates, rendered YAML) and fails
// on anything above INFO.
func TestLint(t *testing.T) {
	for _, values := range []map[string]any{nil, {"profile": "openshift", "revision": "canary"}} {
		l := lint.All(chartDir, values, "istio-system", false)
		for _, m := range l.Messages {
			if m.Severity > support.InfoSev {
				t.Errorf("values %v: %s", values, m)
			}
		}
	}
}

// TestDecodeStrict checks that Decode rejects what a lax decoder would let through, so the
// chart tests above can fail on a misspelt field.
func TestDecodeStrict(t *testing.T) {
	const sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: ztunnel\n"
	tests := []struct {
		name    string
		doc     string
		wantErr bool
	}{
		{"valid", sa, false},
		{"comments only", "# Source: x\n", false},
		{"unknown field", sa + "automountServiceAccountTokn: true\n", true},
		{"duplicate field", sa + "metadata:\n  name: again\n", true},
		{"wrong type", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: [1]\n", true},
		{"unknown kind", "apiVersion: v1\nkind: Gadget\nmetadata:\n  name: x\n", true},
		{"nested unknown field", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: z\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        imagePullPolicyy: Always\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("---\n" + tt.doc)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("Decode err = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

// TestManifestUpToDate checks manifests/ztunnel.yaml against the chart. After a chart change,
// run `go run ./cmd/mkmanifest` (or this test with -update) in deploy/.
func TestManifestUpToDate(t *testing.T) {
	want, err := Manifest(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(manifestFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatalf("%v (generate it with `go run ./cmd/mkmanifest` in deploy/)", err)
	}
	if string(got) != want {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(want, "\n")
		i := 0
		for i < len(gl) && i < len(wl) && gl[i] == wl[i] {
			i++
		}
		t.Fatalf("%s is stale (first difference at line %d); regenerate it with `go run ./cmd/mkmanifest` in deploy/", manifestFile, i+1)
	}
	objs, err := Decode(string(got))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GVK.Kind)
	}
	if !slices.Equal(kinds, []string{"ServiceAccount", "DaemonSet"}) {
		t.Errorf("manifest kinds = %v", kinds)
	}
}

func FuzzDecode(f *testing.F) {
	if m, err := os.ReadFile(manifestFile); err == nil {
		f.Add(string(m))
	}
	f.Add("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: z\n")
	f.Add("---\n# only a comment\n---\n")
	f.Add("apiVersion: v1\nkind: ConfigMap\ndata: {a: 1}\n")
	f.Fuzz(func(t *testing.T, manifest string) {
		objs, err := Decode(manifest)
		if err != nil {
			return
		}
		for _, o := range objs {
			if o.Obj == nil || o.GVK.Kind == "" {
				t.Fatalf("decoded object without a kind: %+v", o)
			}
		}
	})
}
