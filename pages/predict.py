import streamlit as st

st.title("Predict")
st.info("Coming: this page is being built.")
