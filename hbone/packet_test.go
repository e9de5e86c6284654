package hbone

import "testing"

// TestPacketGoal: whole segments within the room for a packet's payload, one segment when
// a segment is larger than the room, nothing for an unknown MSS.
func TestPacketGoal(t *testing.T) {
	for _, c := range []struct{ mss, want int }{
		{1448, 44 * 1448}, // a pod's interface, MTU 1500, with TCP timestamps
		{1460, 44 * 1460},
		{1398, 46 * 1398}, // an overlay's MTU 1450
		{8948, 7 * 8948},  // jumbo frames
		{536, 120 * 536},
		{65483, 65483}, // loopback
		{0, 0},
		{-1, 0},
	} {
		if got := packetGoal(c.mss); got != c.want {
			t.Errorf("packetGoal(%d) = %d, want %d", c.mss, got, c.want)
		}
	}
}
