package solvers

import (
	"fmt"
	"math/rand"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// nsStepFlops is the nominal cost of one Newton–Schulz step on an n×m matrix (n ≤ m): the three matrix
// products X·Xᵀ (n×m·m×n), A·A (n×n·n×n) and B·X (n×n·n×m), at 2 flops per multiply-add. The
// implementation computes only half of the two symmetric products, so its real arithmetic is lower: the
// GFLOP/s reported for "ns5" are nominal, comparable with "sgemm".
func nsStepFlops(n, m int) float64 {
	fn, fm := float64(n), float64(m)
	return 2*fn*fn*fm + 2*fn*fn*fn + 2*fn*fn*fm
}

func benchMatrix32(n int, seed int64) []float32 {
	rng := rand.New(rand.NewSource(seed))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// BenchmarkMuon measures, on float32 matrices of 256x256, 1024x1024 and 1024x4096:
//   - ns5: one Newton–Schulz call (5 quintic steps, NewtonSchulz.Apply), nominal GFLOP/s;
//   - sgemm: a bare BLAS matmul of the three products of one step (blas32.Gemm, gonum's own parallel
//     Sgemm on whole matrices: X·Xᵀ as NoTrans×Trans, A·A and B·X as NoTrans×NoTrans);
//   - sgemm-tiled: the same three products (all NoTrans×Trans, full, no symmetry) through the tiled
//     driver NewtonSchulz uses, i.e. the BLAS kernel time alone with the same parallel split;
//   - step: one Muon step (momentum, NS5, update) on a parameter of that shape.
//
// Run with -benchmem: ns5 and step allocate nothing per call.
func BenchmarkMuon(b *testing.B) {
	for _, sh := range [][2]int{{256, 256}, {1024, 1024}, {1024, 4096}} {
		n, m := sh[0], sh[1]
		label := fmt.Sprintf("%dx%d", n, m)
		b.Run(label+"/ns5", func(b *testing.B) {
			g := benchMatrix32(n*m, 1)
			out := make([]float32, n*m)
			ns := NewNewtonSchulz[float32]()
			if err := ns.Apply(out, g, n, m); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = ns.Apply(out, g, n, m)
			}
			b.ReportMetric(float64(ns.Steps)*nsStepFlops(n, m)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(label+"/sgemm", func(b *testing.B) {
			x := blas32.General{Rows: n, Cols: m, Stride: m, Data: benchMatrix32(n*m, 2)}
			a := blas32.General{Rows: n, Cols: n, Stride: n, Data: make([]float32, n*n)}
			bb := blas32.General{Rows: n, Cols: n, Stride: n, Data: benchMatrix32(n*n, 3)}
			y := blas32.General{Rows: n, Cols: m, Stride: m, Data: make([]float32, n*m)}
			run := func() {
				blas32.Gemm(blas.NoTrans, blas.Trans, 1, x, x, 0, a)    // A = X·Xᵀ
				blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, a, a, 0, bb) // A·A
				blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, bb, x, 0, y) // B·X
			}
			run()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
			b.ReportMetric(nsStepFlops(n, m)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(label+"/sgemm-tiled", func(b *testing.B) {
			ns := NewNewtonSchulz[float32]()
			x, xt := benchMatrix32(n*m, 2), benchMatrix32(n*m, 4)
			a, bb, y := make([]float32, n*n), benchMatrix32(n*n, 3), make([]float32, n*m)
			run := func() {
				ns.product(false, n, n, m, 1, x, m, x, m, 0, a, n, nil)   // X·Xᵀ
				ns.product(false, n, n, n, 1, a, n, a, n, 0, bb, n, nil)  // A·Aᵀ (= A·A)
				ns.product(false, n, m, n, 1, bb, n, xt, n, 0, y, m, nil) // B·X with Xᵀ stored
			}
			run()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
			b.ReportMetric(nsStepFlops(n, m)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(label+"/step", func(b *testing.B) {
			p := NewParamFrom("w", []int{n, m}, benchMatrix32(n*m, 5))
			grad := benchMatrix32(n*m, 6)
			s, err := NewMuon()
			if err != nil {
				b.Fatal(err)
			}
			params := Params(p)
			copy(p.GradTensor().Float32s(), grad)
			if err := s.Step(params); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				copy(p.GradTensor().Float32s(), grad)
				b.StartTimer()
				if err := s.Step(params); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(5*nsStepFlops(n, m)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
