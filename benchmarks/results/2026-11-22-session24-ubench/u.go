package main

import (
	"fmt"
	"sort"
	"time"
)

func aes4(n int)
func aes8(n int)
func clmul8(n int)
func mix(n int)
func adds(n int)
func clmulx(n int)
func mixx(n int)

func med(f func(int), n int) float64 {
	var ds []float64
	for range 9 {
		t := time.Now()
		f(n)
		ds = append(ds, float64(time.Since(t).Nanoseconds())/float64(n*8))
	}
	sort.Float64s(ds)
	return ds[4]
}
func main() {
	n := 2000000
	c := med(adds, n)
	fmt.Printf("cycle ~ %.3f ns (%.2f GHz)\n", c, 1/c)
	for _, x := range []struct {
		name string
		f    func(int)
		per  int
	}{{"aes 4 chains", aes4, 8}, {"aes 8 chains", aes8, 8}, {"clmul ymm", clmul8, 8}, {"mix 8aes+4clmul", mix, 8}, {"clmul xmm", clmulx, 8}, {"8aes+3xor+1shuf", mixx, 8}} {
		m := med(x.f, n)
		fmt.Printf("%-18s %.3f ns/instr-slot = %.2f cycles per 8-slot iteration\n", x.name, m, m*8/c)
	}
}
