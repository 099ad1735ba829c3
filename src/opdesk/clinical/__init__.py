"""The consultation: visits, notes, diagnoses, vitals, prescriptions, diet plans, orders."""
