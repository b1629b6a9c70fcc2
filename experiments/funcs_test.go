package main

import (
	"math"
	"math/rand"
	"testing"
)

// nearKink reports whether x is within d of one of the kinks.
func nearKink(x float64, kinks []float64, d float64) bool {
	for _, k := range kinks {
		if math.Abs(x-k) < d {
			return true
		}
	}
	return false
}

// TestDerivatives1D checks each 1-D function's derivative against central finite differences of its
// closed form, away from the kinks.
func TestDerivatives1D(t *testing.T) {
	const h = 1e-6
	for _, fn := range diffGradFunctions {
		checked := 0
		for i := 0; i <= 560; i++ {
			x := -1.4 + 2.8*float64(i)/560 + 1e-4 // offset so that no point sits on a kink
			if nearKink(x, fn.kinks, 1e-3) {
				continue
			}
			fd := (fn.f(x+h) - fn.f(x-h)) / (2 * h)
			if d := math.Abs(fd - fn.df(x)); d > 1e-5*(1+math.Abs(fd)) {
				t.Errorf("%s: at x=%g f' = %g, central difference %g", fn.name, x, fn.df(x), fd)
			}
			checked++
		}
		if checked < 500 {
			t.Errorf("%s: only %d points checked", fn.name, checked)
		}
	}
}

// simpson integrates f over [a, b] with n (even) intervals.
func simpson(f func(float64) float64, a, b float64, n int) float64 {
	h := (b - a) / float64(n)
	s := f(a) + f(b)
	for i := 1; i < n; i++ {
		w := 2.0
		if i%2 == 1 {
			w = 4
		}
		s += w * f(a+float64(i)*h)
	}
	return s * h / 3
}

// integrate integrates the piecewise-smooth df over [a, b], splitting at the kinks.
func integrate(df func(float64) float64, kinks []float64, a, b float64) float64 {
	pts := []float64{a}
	for _, k := range kinks {
		if k > a && k < b {
			pts = append(pts, k)
		}
	}
	pts = append(pts, b)
	total := 0.0
	for i := 0; i+1 < len(pts); i++ {
		lo, hi := pts[i], pts[i+1]
		// Nudge the ends inside each piece so that df takes that piece's formula at both ends.
		eps := 1e-12 * math.Max(1, math.Abs(hi-lo))
		total += simpson(df, lo+eps, hi-eps, 2000)
	}
	return total
}

// TestClosedFormsIntegrateDerivatives checks f(b) − f(a) = ∫ f′ over intervals spanning the kinks, which
// also checks that each closed form is continuous at the kinks.
func TestClosedFormsIntegrateDerivatives(t *testing.T) {
	pairs := [][2]float64{{-1.4, -1}, {-1, -0.2}, {-1.2, 1.3}, {-0.6, 0.6}, {-0.45, 0.45}, {0.05, 1.1}, {-0.95, -0.85}}
	for _, fn := range diffGradFunctions {
		for _, p := range pairs {
			got := fn.f(p[1]) - fn.f(p[0])
			want := integrate(fn.df, fn.kinks, p[0], p[1])
			if math.Abs(got-want) > 1e-8*(1+math.Abs(want)) {
				t.Errorf("%s: f(%g)−f(%g) = %.12g, ∫f′ = %.12g", fn.name, p[1], p[0], got, want)
			}
		}
		for _, k := range fn.kinks {
			if d := math.Abs(fn.f(k+1e-10) - fn.f(k-1e-10)); d > 1e-8 {
				t.Errorf("%s: jump %g at kink %g", fn.name, d, k)
			}
		}
	}
}

// TestKnownMinima checks the stationary-point search against the minima C4 states.
func TestKnownMinima(t *testing.T) {
	cases := []struct {
		fn     fn1D
		minima []float64
		global float64
	}{
		{diffGradFunctions[0], []float64{-0.3, 0.2}, -0.3},
		{diffGradFunctions[2], []float64{-0.5, 0, 0.5}, 0},
	}
	for _, c := range cases {
		st := findStationary(c.fn.df, c.fn.lo, c.fn.hi, 1e-4)
		if len(st.minima) != len(c.minima) {
			t.Fatalf("%s: minima %v, want %v", c.fn.name, st.minima, c.minima)
		}
		for i, m := range c.minima {
			if math.Abs(st.minima[i]-m) > 1e-8 {
				t.Errorf("%s: minimum %d at %g, want %g", c.fn.name, i, st.minima[i], m)
			}
		}
		order := st.minimaByValue(c.fn.f)
		if g := st.minima[order[0]]; math.Abs(g-c.global) > 1e-8 {
			t.Errorf("%s: global minimum %g", c.fn.name, g)
		}
	}
	st := findStationary(df1, -1.5, 1.5, 1e-4)
	if b := st.basinOf(-0.01); st.minima[b] != -0.3 {
		t.Errorf("F1: basin of -0.01 is %g", st.minima[b])
	}
	if b := st.basinOf(0.01); st.minima[b] != 0.2 {
		t.Errorf("F1: basin of 0.01 is %g", st.minima[b])
	}
}

// TestToyGradients checks the 2-D toys' (sub)gradients against central finite differences away from the
// kinks of |·|, and sign(0) = 0 at the kinks.
func TestToyGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	const h = 1e-6
	for _, toy := range adaBeliefToys() {
		g := make([]float64, 2)
		for n := 0; n < 300; n++ {
			x := []float64{rng.Float64()*6 - 3, rng.Float64()*6 - 3}
			if math.Abs(x[0]) < 1e-3 || math.Abs(x[1]) < 1e-3 || math.Abs(x[0]+x[1]) < 1e-3 || math.Abs(x[0]-x[1]) < 1e-3 {
				continue
			}
			toy.obj.Grad(x, g)
			for i := 0; i < 2; i++ {
				xp := append([]float64(nil), x...)
				xm := append([]float64(nil), x...)
				xp[i] += h
				xm[i] -= h
				fd := (toy.obj.F(xp) - toy.obj.F(xm)) / (2 * h)
				if math.Abs(fd-g[i]) > 1e-5*(1+math.Abs(fd)) {
					t.Errorf("%s at %v: ∂%d = %g, central difference %g", toy.obj.Name, x, i, g[i], fd)
				}
			}
		}
		toy.obj.Grad(toy.xStar[:], g)
		if toy.obj.F(toy.xStar[:]) != toy.obj.FStar {
			t.Errorf("%s: f(x*) = %g, want %g", toy.obj.Name, toy.obj.F(toy.xStar[:]), toy.obj.FStar)
		}
		if g[0] != 0 || g[1] != 0 {
			t.Errorf("%s: gradient at the minimum %v, want 0 (sign(0) = 0)", toy.obj.Name, g)
		}
	}
}
