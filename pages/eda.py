import streamlit as st

st.title("Eda")
st.info("Coming: this page is being built.")
