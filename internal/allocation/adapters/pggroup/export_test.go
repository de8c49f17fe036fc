package pggroup

// CachedVersion returns the version of sku the store's cache holds.
func CachedVersion(s *Store, sku string) (int, bool) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	st, ok := s.cache.m[sku]
	return st.version, ok
}
