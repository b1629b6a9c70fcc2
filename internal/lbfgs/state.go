package lbfgs

import (
	"math"
	"sort"

	"github.com/pkg/errors"
)

// Keys of the maps produced by State.Export and accepted by Import. They are
// torch's state keys; the *_is_tensor scalars (0 or 1) record whether torch
// holds t and H_diag as 0-dim tensors of the parameter dtype or as Python
// numbers.
const (
	KeyD             = "d"                // tensor, length n
	KeyOldDirs       = "old_dirs"         // tensor, k vectors of length n concatenated, oldest first
	KeyOldStps       = "old_stps"         // tensor, k vectors of length n concatenated, oldest first
	KeyRo            = "ro"               // tensor, length k
	KeyPrevFlatGrad  = "prev_flat_grad"   // tensor, length n
	KeyAl            = "al"               // tensor, length >= k (torch's None entries are 0)
	KeyFuncEvals     = "func_evals"       // scalar, integer >= 0
	KeyNIter         = "n_iter"           // scalar, integer >= 0
	KeyT             = "t"                // scalar
	KeyTIsTensor     = "t_is_tensor"      // scalar, 0 or 1
	KeyHDiag         = "H_diag"           // scalar
	KeyHDiagIsTensor = "H_diag_is_tensor" // scalar, 0 or 1
	KeyPrevLoss      = "prev_loss"        // scalar
)

// Export returns a deep copy of the state as named flat vectors and scalars
// (the keys above), for checkpointing. func_evals and n_iter are always
// present; d, old_dirs, old_stps, ro, prev_flat_grad, t, t_is_tensor,
// H_diag, H_diag_is_tensor and prev_loss are present once an iteration has
// run (D != nil); al once torch has created it (from the second iteration
// ever). Import is its exact inverse.
func (s *State[T]) Export() (tensors map[string][]T, scalars map[string]float64) {
	tensors = map[string][]T{}
	scalars = map[string]float64{
		KeyFuncEvals: float64(s.FuncEvals),
		KeyNIter:     float64(s.NIter),
	}
	if s.D != nil {
		tensors[KeyD] = clone(s.D)
		tensors[KeyPrevFlatGrad] = clone(s.PrevFlatGrad)
		tensors[KeyOldDirs] = flatten(s.OldDirs)
		tensors[KeyOldStps] = flatten(s.OldStps)
		tensors[KeyRo] = clone(s.Ro)
		scalars[KeyT] = s.StepSize
		scalars[KeyTIsTensor] = b2f(s.StepSizeIsTensor)
		scalars[KeyHDiag] = s.HDiag
		scalars[KeyHDiagIsTensor] = b2f(s.HDiagIsTensor)
		scalars[KeyPrevLoss] = s.PrevLoss
	}
	if s.Al != nil {
		tensors[KeyAl] = clone(s.Al)
	}
	return tensors, scalars
}

// Import rebuilds a State for a parameter vector of length n from the maps
// written by Export, copying the data. It checks what torch guarantees:
// integral non-negative counters; the iteration keys all present exactly
// when n_iter > 0 and al present exactly when n_iter >= 2; vector lengths
// (d and prev_flat_grad n, old_dirs and old_stps k·n each, ro k, al >= k);
// 0/1 flags; tensor-valued t and H_diag representable in T; a non-tensor
// H_diag equal to 1; no unknown keys.
func Import[T Float](n int, tensors map[string][]T, scalars map[string]float64) (*State[T], error) {
	if n < 1 {
		return nil, errors.Errorf("lbfgs: import: invalid parameter count %d", n)
	}
	if err := checkKeys(tensors, scalars); err != nil {
		return nil, err
	}
	st := NewState[T](n)
	var err error
	if st.FuncEvals, err = count(scalars, KeyFuncEvals); err != nil {
		return nil, err
	}
	if st.NIter, err = count(scalars, KeyNIter); err != nil {
		return nil, err
	}

	started := st.NIter > 0
	for _, k := range []string{KeyD, KeyOldDirs, KeyOldStps, KeyRo, KeyPrevFlatGrad} {
		if _, ok := tensors[k]; ok != started {
			return nil, presenceErr(k, ok, st.NIter)
		}
	}
	for _, k := range []string{KeyT, KeyTIsTensor, KeyHDiag, KeyHDiagIsTensor, KeyPrevLoss} {
		if _, ok := scalars[k]; ok != started {
			return nil, presenceErr(k, ok, st.NIter)
		}
	}
	if _, ok := tensors[KeyAl]; ok != (st.NIter >= 2) {
		return nil, presenceErr(KeyAl, ok, st.NIter)
	}
	if !started {
		return st, nil
	}

	if len(tensors[KeyD]) != n {
		return nil, errors.Errorf("lbfgs: import: %q has length %d, want %d", KeyD, len(tensors[KeyD]), n)
	}
	if len(tensors[KeyPrevFlatGrad]) != n {
		return nil, errors.Errorf("lbfgs: import: %q has length %d, want %d", KeyPrevFlatGrad, len(tensors[KeyPrevFlatGrad]), n)
	}
	dirs, stps, ro := tensors[KeyOldDirs], tensors[KeyOldStps], tensors[KeyRo]
	if len(dirs)%n != 0 || len(stps) != len(dirs) {
		return nil, errors.Errorf("lbfgs: import: %q and %q have lengths %d and %d, want equal multiples of %d", KeyOldDirs, KeyOldStps, len(dirs), len(stps), n)
	}
	k := len(dirs) / n
	if len(ro) != k {
		return nil, errors.Errorf("lbfgs: import: %q has length %d, want %d (one per stored pair)", KeyRo, len(ro), k)
	}
	if al, ok := tensors[KeyAl]; ok && len(al) < k {
		return nil, errors.Errorf("lbfgs: import: %q has length %d, want at least %d", KeyAl, len(al), k)
	}

	tIsTensor, err := flag(scalars, KeyTIsTensor)
	if err != nil {
		return nil, err
	}
	hIsTensor, err := flag(scalars, KeyHDiagIsTensor)
	if err != nil {
		return nil, err
	}
	t, h := scalars[KeyT], scalars[KeyHDiag]
	if tIsTensor && !representable[T](t) {
		return nil, errors.Errorf("lbfgs: import: tensor %q = %v is not representable in the parameter type", KeyT, t)
	}
	if hIsTensor && !representable[T](h) {
		return nil, errors.Errorf("lbfgs: import: tensor %q = %v is not representable in the parameter type", KeyHDiag, h)
	}
	if !hIsTensor && h != 1 {
		return nil, errors.Errorf("lbfgs: import: non-tensor %q must be the Python int 1, got %v", KeyHDiag, h)
	}

	st.D = clone(tensors[KeyD])
	st.PrevFlatGrad = clone(tensors[KeyPrevFlatGrad])
	st.OldDirs = unflatten(dirs, n)
	st.OldStps = unflatten(stps, n)
	st.Ro = clone(ro)
	st.StepSize, st.StepSizeIsTensor = t, tIsTensor
	st.HDiag, st.HDiagIsTensor = h, hIsTensor
	st.PrevLoss = scalars[KeyPrevLoss]
	if al, ok := tensors[KeyAl]; ok {
		st.Al = clone(al)
	}
	return st, nil
}

func checkKeys[T Float](tensors map[string][]T, scalars map[string]float64) error {
	var unknown []string
	for k := range tensors {
		switch k {
		case KeyD, KeyOldDirs, KeyOldStps, KeyRo, KeyPrevFlatGrad, KeyAl:
		default:
			unknown = append(unknown, "tensor "+k)
		}
	}
	for k := range scalars {
		switch k {
		case KeyFuncEvals, KeyNIter, KeyT, KeyTIsTensor, KeyHDiag, KeyHDiagIsTensor, KeyPrevLoss:
		default:
			unknown = append(unknown, "scalar "+k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return errors.Errorf("lbfgs: import: unknown keys %q", unknown)
	}
	return nil
}

func presenceErr(key string, present bool, nIter int) error {
	if present {
		return errors.Errorf("lbfgs: import: unexpected %q with n_iter = %d", key, nIter)
	}
	return errors.Errorf("lbfgs: import: missing %q with n_iter = %d", key, nIter)
}

// count reads a required non-negative integer scalar.
func count(scalars map[string]float64, key string) (int, error) {
	v, ok := scalars[key]
	if !ok {
		return 0, errors.Errorf("lbfgs: import: missing %q", key)
	}
	if !(v >= 0 && v <= 1<<53) || v != math.Trunc(v) {
		return 0, errors.Errorf("lbfgs: import: %q = %v is not a non-negative integer", key, v)
	}
	return int(v), nil
}

// flag reads a 0/1 scalar.
func flag(scalars map[string]float64, key string) (bool, error) {
	switch v := scalars[key]; v {
	case 0:
		return false, nil
	case 1:
		return true, nil
	default:
		return false, errors.Errorf("lbfgs: import: %q = %v, want 0 or 1", key, v)
	}
}

func representable[T Float](v float64) bool {
	return math.IsNaN(v) || float64(T(v)) == v
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// clone returns a non-nil copy of v.
func clone[T Float](v []T) []T {
	out := make([]T, len(v))
	copy(out, v)
	return out
}

func flatten[T Float](vs [][]T) []T {
	n := 0
	for _, v := range vs {
		n += len(v)
	}
	out := make([]T, 0, n)
	for _, v := range vs {
		out = append(out, v...)
	}
	return out
}

func unflatten[T Float](flat []T, n int) [][]T {
	k := len(flat) / n
	out := make([][]T, k)
	for i := range out {
		out[i] = clone(flat[i*n : (i+1)*n])
	}
	return out
}
