"""harmbench.data"""
