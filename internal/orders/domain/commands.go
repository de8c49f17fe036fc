package domain

// CreateOrder opens a customer's cart.
type CreateOrder struct {
	Customer string
	Email    string
}

// AddItem puts Qty units of SKU in the cart of OrderID.
type AddItem struct {
	OrderID string
	SKU     string
	Qty     int
}

// PlaceOrder places the order OrderID.
type PlaceOrder struct{ OrderID string }

// CancelOrder cancels the order OrderID.
type CancelOrder struct{ OrderID string }
