"""Staff and patient identity: users, devices, OTP sign-in, sessions."""
